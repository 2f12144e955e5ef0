"""Frozen boot settings: paths, database URL and listen addresses; everything else is config."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    data_dir: Path
    database_url: str
    config_path: Path | None = None
    smtp_listen: tuple[str, int] | None = None
    soap_listen: str | None = None
    relay: tuple[str, int] | None = None
    # Spool files younger than this are never swept as orphans (appliance.queue.sweep).
    spool_grace: float = 3600.0

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def rrd_dir(self) -> Path:
        return self.data_dir / "rrd"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def dkim_key_dir(self) -> Path:
        return self.data_dir / "keys" / "dkim"


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'appliance.db').resolve()}"


def parse_hostport(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Parse `HOST:PORT`, `[V6]:PORT` or `:PORT`; raise ValueError on anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or default_host
    return host, int(port)
