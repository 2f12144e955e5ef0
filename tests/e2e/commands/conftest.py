"""A live SOAP server (the real gateway and cheroot) whose node runs the real command runner."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zeep

from appliance.access.users import add_user
from appliance.commands.base import CommandContext, DnsResolver, GraphSampler
from appliance.commands.catalog import default_catalog
from appliance.commands.runner import Limits, Runner
from appliance.db.engine import Store
from appliance.queue.spool import Spool
from appliance.soap.calls import NodeContext
from appliance.soap.server import Listen, SoapServer
from tests.e2e.soap.conftest import PASSWORDS, Api, template_db  # noqa: F401 (fixture)

PHP_COMMANDS = Path(__file__).with_name("php_commands.php")
OPERATOR = ("operator", "operator-pw")
OPERATOR_PATTERNS = ["searchlog -- *", "previewmessage *", "queuestat"]
COMMAND_OPERATIONS = ["commandRun", "commandPoll", "commandPush", "commandSignal",
                      "commandTermsize", "commandStop", "commandList"]


class CommandApi(Api):
    runner: Runner
    log_dir: Path

    def zeep(self, user: str = "admin", password: str | None = None) -> zeep.Client:
        if user == OPERATOR[0]:
            password = OPERATOR[1]
        return super().zeep(user, password)

    def php_commands(self, scenarios: list[dict[str, Any]], *, user: str = "admin") -> list[dict[str, Any]]:
        password = OPERATOR[1] if user == OPERATOR[0] else PASSWORDS[user]
        done = subprocess.run(["php", str(PHP_COMMANDS), self.url + "?wsdl", user, password],
                              input=json.dumps(scenarios), capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr + done.stdout
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result


def argv_bytes(*words: str) -> dict[str, list[bytes]]:
    """commandRun's argv as zeep takes it: an array of base64Binary `<item>`s."""
    return {"item": [w.encode() for w in words]}


def run_to_end(client: zeep.Client, argv: list[str], *, timeout: float = 20.0,
               cols: int = 80, rows: int = 24) -> tuple[bytes, str]:
    """commandRun, then commandPoll until the end-fault; (output, faultstring)."""
    cid = client.service.commandRun(argv_bytes(*argv), cols, rows)
    return poll_to_end(client, cid, timeout=timeout)


def poll_to_end(client: zeep.Client, cid: str, *, timeout: float = 20.0) -> tuple[bytes, str]:
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out += b"".join(client.service.commandPoll(cid) or [])
        except zeep.exceptions.Fault as fault:
            return lf(out), fault.message
    raise AssertionError(f"command {cid} did not end: {out[-300:]!r}")


def lf(out: bytes) -> bytes:
    """Command output comes with CRLF line ends (as from a pty): check that, then read it as LF."""
    assert b"\n" not in out.replace(b"\r\n", b""), f"a bare LF in {out[-300:]!r}"
    return out.replace(b"\r\n", b"\n")


def poll_until(client: zeep.Client, cid: str, text: bytes, *, timeout: float = 20.0) -> bytes:
    out, deadline = b"", time.monotonic() + timeout
    while text not in out:
        assert time.monotonic() < deadline, f"{text!r} never came: {out[-300:]!r}"
        out += b"".join(client.service.commandPoll(cid) or [])
    return lf(out)


@contextlib.contextmanager
def running_api(tmp_path: Path, template: Path, *, resolver: DnsResolver | None = None,
                sampler: GraphSampler | None = None,
                sampler_for: Callable[[Store], GraphSampler] | None = None,
                limits: Limits = Limits()) -> Iterator[CommandApi]:
    """A command runner behind a live SOAP server on a copy of the template store; stopped and
    closed on leaving. `sampler_for` makes the sampler from that store."""
    db = tmp_path / "store.db"
    shutil.copy(template, db)
    store = Store(f"sqlite:///{db}")
    with store.transaction() as session:
        add_user(session, OPERATOR[0], OPERATOR[1], role="custom", operations=COMMAND_OPERATIONS,
                 restriction="to~%@tenant.example", command_patterns=OPERATOR_PATTERNS)
    spool = Spool(tmp_path / "spool")
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    if sampler_for is not None:
        sampler = sampler_for(store)
    runner = Runner(default_catalog(), CommandContext(
        log_dir=log_dir, spool=spool, store=store, resolver=resolver, sampler=sampler,
        hostname="node.test"), limits=limits)
    runner.start()
    context = NodeContext(store=store, spool=spool, serial="SERIAL-CMD", hostname="node.test",
                          commands=runner)
    server = SoapServer(context, Listen.parse("http://127.0.0.1:0"), max_request_bytes=1 << 20)
    server.start()
    api = CommandApi(server=server, store=store, spool=spool, kicks=[])
    api.runner, api.log_dir = runner, log_dir
    try:
        yield api
    finally:
        server.stop()
        runner.stop()
        store.dispose()


@pytest.fixture
def capi(tmp_path: Path, template_db: Path) -> Iterator[CommandApi]:  # noqa: F811
    with running_api(tmp_path, template_db) as api:
        yield api
