"""Spool files: message bodies written under their final name, fsync'd with their directory."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.errors import InvalidInput, NotFound, StoreUnavailable


class Spool:
    """Message bodies under one directory, named `<2 hex>/<msgid>.eml`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def write(self, msgid: str, data: bytes) -> str:
        """Write a body durably (file and directory entry fsync'd); return its spool path.

        The body goes straight to its final name (created exclusively): nothing refers to it
        until the queue commit that follows, so a crash mid-write leaves an unreferenced file,
        as a crash before that commit would anyway. Without a temporary name and a rename, one
        journal commit covers file and entry (the directory fsync then finds nothing to do on
        ext4, but still guarantees the entry on any POSIX file system).
        """
        rel = f"{msgid[:2]}/{msgid}.eml"
        final = self.root / rel
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            try:
                fd = os.open(final, flags, 0o640)
            except FileNotFoundError:
                self._make_dir(final.parent)
                fd = os.open(final, flags, 0o640)
        except OSError as exc:
            raise StoreUnavailable(f"spool write failed: {exc.strerror or exc}") from exc
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(final.parent)
        except OSError as exc:
            final.unlink(missing_ok=True)
            raise StoreUnavailable(f"spool write failed: {exc.strerror or exc}") from exc
        except BaseException:
            final.unlink(missing_ok=True)  # no half-written body left behind, whatever failed
            raise
        return rel

    def _make_dir(self, path: Path) -> None:
        path.mkdir(exist_ok=True)
        _fsync_dir(self.root)  # the new directory's own entry (fsync(2): the parent holds it)

    def resolve(self, rel: str) -> Path:
        """The absolute path of a spool file; refuses anything that leaves the spool."""
        if not rel or "\x00" in rel or os.path.isabs(rel):
            raise InvalidInput(f"not a spool path: {rel!r}")
        candidate = self.root / rel
        # realpath follows symlinks, so a link pointing outside is refused too.
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            raise InvalidInput(f"not a spool path: {rel!r}")
        if real.parent == self._tmp or not real.is_file():
            raise NotFound(f"no such spool file: {rel!r}")
        return real

    def read(self, rel: str) -> bytes:
        return self.resolve(rel).read_bytes()

    def read_headers(self, rel: str, *, limit: int = 256 * 1024) -> bytes:
        """The header block of a message (up to the first blank line, at most `limit` bytes)."""
        with open(self.resolve(rel), "rb") as fh:
            head = fh.read(limit)
        for sep in (b"\r\n\r\n", b"\n\n"):
            end = head.find(sep)
            if end != -1:
                return head[: end + len(sep)]
        return head

    def remove(self, rel: str) -> None:
        try:
            self.resolve(rel).unlink()
        except (NotFound, FileNotFoundError):
            pass

    def all_paths(self) -> list[str]:
        return [
            str(p.relative_to(self.root))
            for p in self.root.glob("*/*.eml")
            if p.parent != self._tmp
        ]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
