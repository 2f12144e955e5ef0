"""Spool files: durable writes, and no path that leaves the spool."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from appliance.errors import InvalidInput, NotFound, StoreUnavailable
from appliance.queue import spool as spool_module
from appliance.queue.spool import Spool


def test_write_read_remove(spool: Spool) -> None:
    msgid = str(uuid.uuid4())
    rel = spool.write(msgid, b"Subject: x\r\n\r\nbody\r\n")
    assert spool.read(rel).endswith(b"body\r\n")
    assert spool.read_headers(rel) == b"Subject: x\r\n\r\n"
    assert rel in spool.all_paths()
    assert not list((spool.root / "tmp").iterdir())
    spool.remove(rel)
    with pytest.raises(NotFound):
        spool.read(rel)


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "ab/../../x", "", "a\x00b"])
def test_paths_outside_refused(spool: Spool, bad: str) -> None:
    with pytest.raises((InvalidInput, NotFound)):
        spool.read(bad)


def test_symlink_out_of_spool_refused(spool: Spool, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (spool.root / "ab").mkdir()
    os.symlink(secret, spool.root / "ab" / "link.eml")
    with pytest.raises(InvalidInput):
        spool.read("ab/link.eml")


def test_a_body_is_never_overwritten_and_a_failed_write_leaves_nothing(spool: Spool) -> None:
    msgid = str(uuid.uuid4())
    rel = spool.write(msgid, b"first\r\n")
    with pytest.raises(StoreUnavailable):
        spool.write(msgid, b"second\r\n")  # created exclusively: the first body stays
    assert spool.read(rel) == b"first\r\n"
    with pytest.raises(TypeError):
        spool.write(str(uuid.uuid4()), "not bytes")  # type: ignore[arg-type]
    assert spool.all_paths() == [rel]


def test_a_new_subdirectory_is_made_on_demand(spool: Spool) -> None:
    rel = spool.write("ff" + str(uuid.uuid4())[2:], b"x")
    assert rel.startswith("ff/") and (spool.root / rel).read_bytes() == b"x"


class _Libc:
    """Stands in for the C library's syncfs(2): records the calls, fails when told."""

    def __init__(self, errno: int = 0) -> None:
        self.calls: list[int] = []
        self.errno = errno

    def syncfs(self, fd: int) -> int:
        self.calls.append(os.fstat(fd).st_ino)
        if self.errno:
            import ctypes
            ctypes.set_errno(self.errno)
            return -1
        return 0


def _bodies(n: int) -> dict[str, bytes]:
    return {f"{i % 256:02x}{uuid.uuid4()}": f"Subject: {i}\r\n\r\n".encode() * (i % 7 + 1)
            for i in range(n)}


@pytest.mark.parametrize("n", [3, 600])  # within one write-ahead, and several in slices
def test_a_batch_is_made_durable_by_one_syncfs_of_the_spool(spool: Spool, monkeypatch: pytest.MonkeyPatch,
                                                            n: int) -> None:
    libc = _Libc()
    monkeypatch.setattr(spool_module, "_LIBC", libc)
    bodies = _bodies(n)
    with spool.batch() as batch:
        paths = {msgid: batch.write(msgid, data) for msgid, data in bodies.items()}
        assert libc.calls == []
    assert libc.calls == [spool.root.stat().st_ino]
    assert {msgid: spool.read(rel) for msgid, rel in paths.items()} == bodies


def test_without_syncfs_each_body_and_directory_is_fsynced(spool: Spool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "_LIBC", None)
    synced: list[Path] = []
    real = spool_module._fsync_file
    monkeypatch.setattr(spool_module, "_fsync_file", lambda p: (synced.append(p), real(p)))
    dirs: list[Path] = []
    real_dir = spool_module._fsync_dir
    monkeypatch.setattr(spool_module, "_fsync_dir", lambda p: (dirs.append(p), real_dir(p)))
    bodies = _bodies(300)
    with spool.batch() as batch:
        paths = [batch.write(msgid, data) for msgid, data in bodies.items()]
    assert sorted(synced) == sorted(spool.root / rel for rel in paths)
    assert set(dirs) >= {(spool.root / rel).parent for rel in paths}
    assert sorted(spool.all_paths()) == sorted(paths)


def test_a_failed_syncfs_is_a_spool_failure_and_leaves_no_body(spool: Spool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    monkeypatch.setattr(spool_module, "_LIBC", _Libc(errno.EIO))
    with pytest.raises(StoreUnavailable, match="spool write failed"):
        with spool.batch() as batch:
            for msgid, data in _bodies(300).items():
                batch.write(msgid, data)
    assert spool.all_paths() == []
