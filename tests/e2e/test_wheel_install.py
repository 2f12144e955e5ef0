"""A wheel built from the project, installed into a fresh venv, runs a node that delivers mail."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from tests.e2e.delivery.sink import Sink
from tests.support.node import REPO, wait_for_port
from tests.support.postgres import free_port


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert done.returncode == 0, done.stderr
    (wheel_file,) = out.glob("appliance-*.whl")
    return wheel_file


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that sees the machine's site-packages for the dependencies, and the wheel itself
    installed into the venv (which comes first on its path)."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "--no-deps", "--ignore-installed", "-q", str(wheel)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return env_dir


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_wheel_carries_migrations_wsdl_and_examples(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "appliance/migrations/env.py" in names
    assert any(n.startswith("appliance/migrations/versions/0001") for n in names)
    assert "appliance/wsdl/appliance.wsdl" in names
    assert "appliance/policy/examples/ratelimit.lua" in names


def test_node_from_the_wheel_delivers_a_message(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    where = subprocess.run([str(python), "-I", "-c", "import appliance; print(appliance.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=_clean_env(),
                           timeout=60)
    assert where.stdout.strip().startswith(str(installed)), where.stdout + where.stderr

    data = tmp_path / "node"
    smtp_port, soap_port = free_port(), free_port()
    appliance = str(installed / "bin" / "appliance")
    with Sink() as sink:
        argv = [appliance, "--data-dir", str(data), "run", "--smtp-listen",
                f"127.0.0.1:{smtp_port}", "--soap-listen", f"http://127.0.0.1:{soap_port}",
                "--relay", f"127.0.0.1:{sink.port}"]
        log = tmp_path / "node.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                    env=_clean_env())
        try:
            wait_for_port(smtp_port, proc=proc)
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
                client.sendmail("a@example.org", ["b@example.net"],
                                b"Subject: from a wheel\r\n\r\nhello\r\n")
            deadline = time.monotonic() + 60
            while not sink.messages and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert [m.rcpt_tos for m in sink.messages] == [["b@example.net"]], log.read_text()
            assert b"from a wheel" in sink.messages[0].content
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    assert "Path doesn't exist" not in log.read_text()
