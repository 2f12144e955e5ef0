"""A real node process for end-to-end tests: `with RunningNode(tmp_path) as node: ...`."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any


REPO = Path(__file__).resolve().parents[2]


def wait_for_port(port: int, *, proc: subprocess.Popen[bytes] | None = None,
                  host: str = "127.0.0.1", timeout: float = 60.0) -> None:
    """Poll until something accepts on host:port (fail early if `proc` died)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"node exited with {proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}")
            time.sleep(0.05)


def read_ports(data_dir: Path, *, proc: subprocess.Popen[bytes] | None = None,
               timeout: float = 90.0) -> dict[str, object]:
    """Poll for the `run/ports.json` a node's supervisor writes once every child is ready
    (ports it really got, with port 0 configured); fail early if `proc` died."""
    import json

    path = Path(data_dir) / "run" / "ports.json"
    deadline = time.monotonic() + timeout
    while True:
        try:
            ports = json.loads(path.read_text())
            if proc is None or ports.get("pid") == proc.pid:
                return dict(ports)
        except (OSError, ValueError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path} within {timeout} s")
        time.sleep(0.05)


class RunningNode:
    """`python -m appliance run` on loopback with its own data dir and an admin user. It binds
    port 0 and reads the ports it got from run/ports.json, so `smtp_port`/`soap_url` are set
    by `start()` (and change across a restart)."""

    def __init__(self, tmp_path: Path, *, database_url: str | None = None,
                 config_text: str | None = None, relay: tuple[str, int] | str | None = None,
                 extra_args: tuple[str, ...] | list[str] = (), ready_timeout: float = 90.0,
                 scheme: str = "http") -> None:
        self.scheme = scheme  # of the API listener: https gets the node's self-signed certificate
        self.data_dir = Path(tmp_path) / "node"
        self.ready_timeout = ready_timeout  # how long start() waits for every child to be ready
        self.database_url = database_url
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = Path(tmp_path) / "node.toml"
            self.config_path.write_text(config_text)
        self.relay = f"{relay[0]}:{relay[1]}" if isinstance(relay, tuple) else relay
        self.extra_args = list(extra_args)
        self.smtp_port = 0
        self.soap_port = 0
        self.soap_url = ""
        self.ports: dict[str, object] = {}
        self.admin_password = secrets.token_urlsafe(12)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tmp_path) / "node-output.log"
        self._created = False

    def _base(self) -> list[str]:
        argv = [sys.executable, "-m", "appliance", "--data-dir", str(self.data_dir)]
        if self.database_url:
            argv += ["--database", self.database_url]
        return argv

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        return env

    def cli(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `appliance --data-dir D [--database U] ARGS...` against this node's store."""
        return subprocess.run([*self._base(), *args], input=input_text, capture_output=True,
                              text=True, env=self._env(), cwd=REPO, timeout=120)

    def start(self, *, wait: bool = True) -> "RunningNode":
        """Start the node; with `wait`, until its listeners answer (a node armed to crash at
        start may never get there: start it with wait=False)."""
        if not self._created:
            done = self.cli("user", "add", "admin", "--role", "admin", "--password-stdin",
                            input_text=self.admin_password + "\n")
            if done.returncode != 0:
                raise RuntimeError(f"user add failed: {done.stderr}")
            self._created = True
        argv = [*self._base(), "run", "--smtp-listen", "127.0.0.1:0",
                "--soap-listen", f"{self.scheme}://127.0.0.1:0"]
        if self.relay:
            argv += ["--relay", self.relay]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        argv += self.extra_args
        with open(self.log_path, "ab") as out:
            # Its own process group: kill() can take the supervisor and every child at once.
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=self._env(), cwd=REPO, start_new_session=True)
        if not wait:
            return self
        try:
            self.ports = read_ports(self.data_dir, proc=self.proc, timeout=self.ready_timeout)
            smtp = self.ports["smtp"]
            assert isinstance(smtp, dict)
            self.smtp_port = int(next(iter(smtp.values())))
            self.soap_port = int(str(self.ports["api_port"]))
            self.soap_url = str(self.ports.get("api_url") or
                                f"{self.scheme}://127.0.0.1:{self.soap_port}/remote/")
            wait_for_port(self.smtp_port, proc=self.proc)
            wait_for_port(self.soap_port, proc=self.proc)
        except Exception as exc:
            self.kill()
            raise RuntimeError(f"{exc}\n--- node output ---\n{self.output()}") from exc
        return self

    @property
    def console_url(self) -> str:
        """The web console's base URL (the API listener's root; HTTPS with scheme="https")."""
        return self.soap_url.split("/remote/")[0]

    @property
    def cert_path(self) -> Path:
        """The node's self-signed API certificate (made at the first start with https)."""
        return self.data_dir / "tls" / "node.crt"

    def add_user(self, name: str, role: str, password: str) -> None:
        done = self.cli("user", "add", name, "--role", role, "--password-stdin",
                        input_text=password + "\n")
        if done.returncode != 0:
            raise RuntimeError(f"user add {name} failed: {done.stderr}")

    def console_session(self, username: str = "admin", password: str | None = None) -> "Any":
        """A requests.Session logged in to the console (trusting the node's certificate)."""
        import re

        import requests

        http = requests.Session()
        http.verify = str(self.cert_path)
        http.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
        page = http.get(self.console_url + "/login", timeout=30)
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        done = http.post(self.console_url + "/login", timeout=30, allow_redirects=False, data={
            "username": username, "password": self.admin_password if password is None else password,
            "csrf": token.group(1)})
        if done.status_code != 303:
            raise RuntimeError(f"console login as {username} failed: {done.status_code} {done.text[:300]}")
        return http

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL if it does not end in time); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        code = self.proc.returncode
        self._wait_group_gone(self.proc.pid)
        self.proc = None
        return code

    def children(self, *, forkserver: bool = False) -> dict[str, int]:
        """The node's child processes now: name ("appliance smtp 1", ...) -> pid; the fork
        server the others are forked from ("appliance forkserver") only when asked for."""
        if self.proc is None:
            return {}
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            name = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            if ppid == self.proc.pid and (forkserver or name != "appliance forkserver"):
                found[name] = int(entry.name)
        return found

    def kill(self) -> None:
        """SIGKILL to the whole process group: the crash case."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self._wait_group_gone(self.proc.pid)
        self.proc = None

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
        """Children die with the supervisor (PR_SET_PDEATHSIG); wait until none is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def __enter__(self) -> "RunningNode":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
