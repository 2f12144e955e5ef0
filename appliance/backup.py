"""`appliance backup` / `restore`: a consistent online snapshot of a node's store, spool and files."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, NodeInfo, QueueEntry
from appliance.db.schema import ensure_schema
from appliance.errors import Conflict, InvalidInput
from appliance.settings import Settings

FORMAT = 1
# Folders of the data directory copied as they are; the store is snapshotted on its own.
FILE_DIRS = ("tls", "rrd", "keys")
SQLITE_MEMBER = "store.sqlite"
PG_MEMBER = "store.pgdump"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Summary:
    kind: str  # sqlite | postgresql
    serial: str
    entries: int
    history: int
    spool_files: int
    created: float

    def text(self) -> str:
        return (f"node {self.serial} ({self.kind}): {self.entries} queue entries, "
                f"{self.history} history rows, {self.spool_files} spool files")


def backup(settings: Settings, target: Path, *,
           clock: Callable[[], float] = time.time) -> Summary:
    """Write a gzip'd tar of the node to `target` while the node runs.

    Order matters for consistency: the spool is hard-linked aside first, then the store is
    snapshotted (SQLite's online backup API, or pg_dump's own snapshot), then the spool is
    linked again to catch bodies that arrived meanwhile. Every entry in the snapshot had its
    body on disk when the snapshot was taken (bodies are durable before their rows), so it is in
    one of the two passes unless it was delivered and unlinked between the snapshot and the
    second pass, in the milliseconds between them; restore sets such an entry aside (no body).
    Spool bodies are never rewritten, so a link is a frozen copy.
    """
    kind = _kind(settings.database_url)
    staging = Path(tempfile.mkdtemp(prefix=".backup-", dir=settings.data_dir))
    try:
        spool = staging / "spool"
        spool.mkdir()
        _link_tree(settings.spool_dir, spool)
        if kind == "sqlite":
            _sqlite_snapshot(settings.database_url, staging / SQLITE_MEMBER)
        else:
            _pg_dump(settings.database_url, staging / PG_MEMBER)
        spool_files = _link_tree(settings.spool_dir, spool)
        # SQLite: counted in the snapshot itself; PostgreSQL: in the live store just after.
        counted = (f"sqlite:///{staging / SQLITE_MEMBER}" if kind == "sqlite"
                   else settings.database_url)
        summary = _summarize(counted, kind, spool_files, clock())
        (staging / "manifest.json").write_text(json.dumps(
            {"format": FORMAT, **dataclasses.asdict(summary)}, indent=1))
        partial = target.with_name(f".{target.name}.partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(staging / "manifest.json", arcname="manifest.json")
            member = SQLITE_MEMBER if kind == "sqlite" else PG_MEMBER
            tar.add(staging / member, arcname=member)
            tar.add(spool, arcname="spool")
            for name in FILE_DIRS:
                if (settings.data_dir / name).is_dir():
                    tar.add(settings.data_dir / name, arcname=name)
        with open(partial, "rb") as done:
            os.fsync(done.fileno())
        partial.replace(target)
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def restore(settings: Settings, source: Path) -> Summary:
    """Unpack a backup into an empty data directory (and an empty store for PostgreSQL)."""
    if settings.data_dir.exists() and any(settings.data_dir.iterdir()):
        raise Conflict(f"{settings.data_dir} is not empty: restore only into an empty data dir")
    kind = _kind(settings.database_url)
    try:
        tar = tarfile.open(source, "r:gz")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"{source} is not an appliance backup: {exc}") from exc
    with tar:
        manifest = _manifest(tar, source)
        if manifest["kind"] != kind:
            raise InvalidInput(f"the backup holds a {manifest['kind']} store; --database is {kind}")
        if kind == "postgresql":
            _require_empty_pg(settings.database_url)
        elif _sqlite_path(settings.database_url).exists():
            raise Conflict(f"{_sqlite_path(settings.database_url)} exists: restore only into "
                           "an empty store")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            tar.extractall(settings.data_dir, filter="data")  # no absolute paths, .., links out
            _restore_store(settings, kind)
        except BaseException:
            # Nothing half-restored: the data dir was empty, so empty it again.
            for child in settings.data_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            raise
    return Summary(**{k: manifest[k] for k in
                      ("kind", "serial", "entries", "history", "spool_files", "created")})


def _manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        member = tar.extractfile("manifest.json")
        manifest = json.load(member) if member is not None else None
    except (KeyError, ValueError, tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"{source} is not an appliance backup: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{source}: not an appliance backup of format {FORMAT}")
    return manifest


def _restore_store(settings: Settings, kind: str) -> None:
    if kind == "sqlite":
        (settings.data_dir / SQLITE_MEMBER).replace(_sqlite_path(settings.database_url))
    else:
        dump = settings.data_dir / PG_MEMBER
        _pg_restore(settings.database_url, dump)
        dump.unlink()
    (settings.data_dir / "manifest.json").unlink()
    store = Store(settings.database_url)
    try:
        ensure_schema(store.engine)  # a backup of an older version is upgraded here
    finally:
        store.dispose()


def _kind(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InvalidInput(f"cannot back up a {backend} store")
    return backend


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidInput("an in-memory SQLite store has nothing to back up")
    return Path(database)


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_snapshot(url: str, target: Path) -> None:
    """SQLite's online backup: a consistent copy while writers go on (they wait per step)."""
    source = sqlite3.connect(_sqlite_path(url), timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy, pages=4096)
    finally:
        copy.close()
        source.close()


def _pg_dump(url: str, target: Path) -> None:
    done = subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--file", str(target),
                           "--dbname", _libpq_url(url)], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"pg_dump failed: {done.stderr.strip()}")


def _pg_restore(url: str, dump: Path) -> None:
    done = subprocess.run(["pg_restore", "--no-owner", "--single-transaction", "--dbname",
                           _libpq_url(url), str(dump)], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"pg_restore failed: {done.stderr.strip()}")


def _require_empty_pg(url: str) -> None:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            tables = inspect(conn).get_table_names()
    finally:
        store.dispose()
    if tables:
        raise Conflict(f"the target database already has tables ({len(tables)}): restore "
                       "only into an empty database")


def _link_tree(source: Path, target: Path) -> int:
    """Hard-link every file under `source` into `target` (files already there are kept)."""
    count = 0
    for path in _files(source):
        rel = path.relative_to(source)
        if rel.parts[0] == "tmp":
            continue  # bodies being written: not referenced by any committed entry yet
        link = target / rel
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, link)
            except FileNotFoundError:
                continue  # delivered and removed while we walked
        count += 1
    return count


def _files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for folder, _dirs, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def _summarize(url: str, kind: str, spool_files: int, created: float) -> Summary:
    store = Store(url)
    try:
        with store.transaction(read_only=True) as session:
            serial = session.scalar(select(NodeInfo.value).where(NodeInfo.key == "serial"))
            entries = session.scalar(select(func.count()).select_from(QueueEntry))
            history = session.scalar(select(func.count()).select_from(HistoryEntry))
    finally:
        store.dispose()
    return Summary(kind=kind, serial=str(serial or ""), entries=int(entries or 0),
                   history=int(history or 0), spool_files=spool_files, created=created)
