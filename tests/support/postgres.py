"""A throwaway PostgreSQL cluster on a loopback port, for the tests and benchmarks."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (run tools/setup.sh --test)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb + postgres in a temp dir; as root the server runs as the `postgres` user.

    The tests' server skips fsync (a test asserts behaviour, not what survives power loss);
    `durable=True`, for the benchmarks, keeps PostgreSQL's own default, fsync on, so that a
    commit costs there what it costs an operator's server."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.dir = Path(tempfile.mkdtemp(prefix="appliance-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    def _cmd(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_root else argv

    def start(self) -> "PostgresServer":
        data = self.dir / "data"
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            self._cmd([_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        with open(self.dir / "server.log", "wb") as server_log:
            self.proc = subprocess.Popen(
                self._cmd([
                    _bin("postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
                    "-k", str(self.dir), "-c", f"fsync={'on' if self.durable else 'off'}",
                    "-c", "max_connections=300", "-c", "shared_buffers=64MB",
                ]),
                stdout=subprocess.DEVNULL, stderr=server_log,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.dir / "server.log").read_text())
                time.sleep(0.1)

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            tmpl = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
        return self.url(name)

    def pause(self) -> None:
        """A fast shutdown through pg_ctl (signalling `runuser` would orphan the postmaster);
        the data stays for resume()."""
        subprocess.run(self._cmd([_bin("pg_ctl"), "-D", str(self.dir / "data"), "stop", "-m", "fast",
                                  "-w"]), check=True, stdout=subprocess.DEVNULL)
        assert self.proc is not None
        self.proc.wait(timeout=30)

    def resume(self) -> None:
        """Start the same data directory again on the same port."""
        with open(self.dir / "server.log", "ab") as server_log:
            self.proc = subprocess.Popen(
                self._cmd([_bin("postgres"), "-D", str(self.dir / "data"), "-p", str(self.port),
                           "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off"]),
                stdout=subprocess.DEVNULL, stderr=server_log,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
