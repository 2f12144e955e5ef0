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

from tests.support.postgres import free_port

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


def _soap_is_wired() -> bool:
    from appliance.wiring import COMPONENT_FACTORIES

    return any(".soap" in spec for spec in COMPONENT_FACTORIES)


class RunningNode:
    """`python -m appliance run` on loopback with its own data dir, an admin user, free ports."""

    def __init__(self, tmp_path: Path, *, database_url: str | None = None,
                 config_text: str | None = None, relay: tuple[str, int] | str | None = None,
                 extra_args: tuple[str, ...] | list[str] = ()) -> None:
        self.data_dir = Path(tmp_path) / "node"
        self.database_url = database_url
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = Path(tmp_path) / "node.toml"
            self.config_path.write_text(config_text)
        self.relay = f"{relay[0]}:{relay[1]}" if isinstance(relay, tuple) else relay
        self.extra_args = list(extra_args)
        self.smtp_port = free_port()
        self.soap_port = free_port()
        self.soap_url = f"http://127.0.0.1:{self.soap_port}/remote/"
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

    def start(self) -> "RunningNode":
        if not self._created:
            done = self.cli("user", "add", "admin", "--role", "admin", "--password-stdin",
                            input_text=self.admin_password + "\n")
            if done.returncode != 0:
                raise RuntimeError(f"user add failed: {done.stderr}")
            self._created = True
        argv = [*self._base(), "run", "--smtp-listen", f"127.0.0.1:{self.smtp_port}",
                "--soap-listen", f"http://127.0.0.1:{self.soap_port}"]
        if self.relay:
            argv += ["--relay", self.relay]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        argv += self.extra_args
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=self._env(), cwd=REPO)
        try:
            wait_for_port(self.smtp_port, proc=self.proc)
            if _soap_is_wired():
                wait_for_port(self.soap_port, proc=self.proc)
        except Exception as exc:
            self.kill()
            raise RuntimeError(f"{exc}\n--- node output ---\n{self.output()}") from exc
        return self

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
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def __enter__(self) -> "RunningNode":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
