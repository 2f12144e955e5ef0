"""The `appliance` command line: first start, serial, clean stop, users, bad config."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

from appliance.cli import main
from appliance.db.engine import Store
from appliance.settings import default_database_url
from appliance.compose import read_serial
from tests.support.node import REPO, wait_for_port
from tests.support.postgres import free_port


def appliance(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (same code as the console script, without a slow interpreter
    start): returns what a subprocess run would."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch.object(sys, "stdin", io.StringIO(input_text or "")):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse refusing the command line
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def run_until_listening(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """Start `appliance run`, wait for SMTP, SIGTERM it; return the process and its stdout."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--data-dir", str(data_dir),
         "--smtp-listen", f"127.0.0.1:{port}", "--soap-listen", f"http://127.0.0.1:{free_port()}",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for_port(port, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return proc, out


def test_first_start_creates_admin_once_keeps_serial_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    config = tmp_path / "node.toml"
    # The file says port 1; --smtp-listen must win (flag > config file > defaults).
    config.write_text('[[listeners]]\nid = "edge"\naddress = "127.0.0.1"\nport = 1\n')
    first, out1 = run_until_listening(data_dir, "--config", str(config))
    assert first.returncode == 0
    assert "created user admin with password: " in out1
    password = out1.split("created user admin with password: ")[1].split()[0]
    store = Store(default_database_url(data_dir))
    try:
        serial = read_serial(store)
    finally:
        store.dispose()
    assert len(serial) == 16 and serial in out1
    second, out2 = run_until_listening(data_dir)
    assert second.returncode == 0
    assert "created user admin" not in out2  # printed once, at the first start only
    assert serial in out2
    assert "admin\tadmin" in appliance("--data-dir", str(data_dir), "user", "list").stdout
    changed = appliance("--data-dir", str(data_dir), "user", "passwd", "admin", "--password-stdin",
                        input_text=password + "-new\n")
    assert changed.returncode == 0, changed.stderr


def test_user_commands(tmp_path: Path) -> None:
    d = str(tmp_path / "var")
    assert appliance("--data-dir", d, "user", "add", "ops", "--role", "readonly",
                     "--password-stdin", input_text="pw\n").returncode == 0
    dup = appliance("--data-dir", d, "user", "add", "ops", "--password-stdin", input_text="pw\n")
    assert dup.returncode == 1 and "exists" in dup.stderr
    empty = appliance("user", "add", "x", "--password-stdin", "--data-dir", d, input_text="\n")
    assert empty.returncode == 1 and "password" in empty.stderr
    assert appliance("--data-dir", d, "user", "list").stdout == "ops\treadonly\n"
    assert appliance("--data-dir", d, "user", "delete", "ops").returncode == 0
    missing = appliance("--data-dir", d, "user", "delete", "ops")
    assert missing.returncode == 1 and "no user" in missing.stderr


def test_db_upgrade_and_bad_config(tmp_path: Path) -> None:
    d = str(tmp_path / "var")
    upgraded = appliance("--data-dir", d, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nname = "n"\n\n[[listeners]]\nid = "in"\nport = "not a port"\n')
    refused = appliance("run", "--data-dir", d, "--config", str(bad))
    assert refused.returncode == 2
    assert "line 6" in refused.stderr and "port" in refused.stderr
    flags = appliance("run", "--data-dir", d, "--smtp-listen", "nonsense")
    assert flags.returncode == 2 and "HOST:PORT" in flags.stderr

