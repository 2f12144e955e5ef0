"""The old clients' commands replayed with suds and PHP's SoapClient: `statd -l` and `statd -g`
in the old KEY=VALUE format, and output with CRLF line ends as from a pty."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from suds.client import Client as SudsClient

from appliance.queue import store as queue_store
from appliance.stats.sampler import Sampler
from appliance.stats.sources import Probe
from appliance.types import Envelope, NewMessage, QueueState
from tests.e2e.commands.conftest import CommandApi, running_api

PHP_COMMANDS = Path(__file__).with_name("php_commands.php")


@pytest.fixture
def capi(tmp_path: Path, template_db: Path) -> Iterator[CommandApi]:
    # the real sampler over this store, the data dir for storage usage
    with running_api(tmp_path, template_db,
                     sampler_for=lambda store: Sampler(Probe(store=store), storage=tmp_path)) as api:
        yield api


def seed(api: CommandApi) -> None:
    """Two deferred entries and one a policy quarantined."""
    api.queue(rcpts=("a@one.example", "b@one.example"), state=QueueState.DEFER)
    msgid = str(uuid.uuid4())
    path = api.spool.write(msgid, b"Subject: q\r\n\r\nq\r\n")
    with api.store.transaction() as session:
        queue_store.enqueue(session, NewMessage(
            msgid=msgid, envelope=Envelope(sender="s@x.example", recipients=("q@one.example",)),
            path=path, size=16, received=time.time(), state=QueueState.HOLD, quarantine="spam"),
            now=time.time())


def b64(word: str) -> str:
    return base64.b64encode(word.encode()).decode()


def run(client: SudsClient, *argv: str, until: bytes | None = None, timeout: float = 20.0) -> bytes:
    """commandRun as halonctl sends it (argv items base64), then commandPoll: to the end-fault,
    or until `until` appeared (then commandStop and drain)."""
    cid = client.service.commandRun({"item": [b64(a) for a in argv]}, 80, 24)
    out, deadline, stopped = b"", time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        try:
            reply = client.service.commandPoll(cid)
        except Exception as exc:  # the end of the command is a fault
            assert "has ended" in str(exc)
            return out
        out += b"".join(base64.b64decode(c) for c in getattr(reply, "item", []))
        if until is not None and until in out and not stopped:
            client.service.commandStop(cid)
            stopped = True
    raise AssertionError(f"{argv} did not end: {out[-300:]!r}")


def halonctl_stat_lines(output: str) -> dict[str, int | float]:
    """How halonctl's `stat` module reads statd's output."""
    data: dict[str, int | float] = {}
    for line in [line.strip() for line in output.split("\n")]:
        if not line:
            continue
        key, count = line.split("=", 2)
        data[key] = int(count) if "." not in count else float(count)
    return data


def test_statd_list_and_stream_in_the_old_format_with_suds(capi: CommandApi) -> None:
    seed(capi)
    client = capi.suds()
    listed = run(client, "statd", "-l")
    assert b"\n" not in listed.replace(b"\r\n", b"")  # CRLF line ends only
    values = halonctl_stat_lines(listed.decode())
    assert values["mail-queue-count"] == 3 and values["mail-quarantine-count"] == 1
    assert values["queue:defer"] == 2 and values["queue:hold"] == 1 and values["queue:active"] == 0
    for name in ("system-cpu-usage", "system-mem-usage", "system-swap-usage",
                 "system-storage-usage", "interface-lo-bandwidth", "interface-lo-packets",
                 "load:load1", "delivery:deliver", "smtp-connections:connections"):
        assert name in values, name
    assert 0 <= values["system-cpu-usage"] <= 100 and 0 < values["system-storage-usage"] <= 100

    streamed = run(client, "statd", "-g", "mail-queue-count",
                   until=b"mail-queue-count=3\r\n\r\nmail-queue-count=3\r\n\r\n")
    assert streamed.startswith(b"mail-queue-count=3\r\n\r\nmail-queue-count=3\r\n\r\n")
    assert halonctl_stat_lines(streamed.decode()) == {"mail-queue-count": 3}
    graph = run(client, "statd", "-g", "queue", until=b"\r\n\r\n")
    assert graph.split(b"\r\n\r\n")[0].split(b"\r\n") == [
        b"queue:active=0", b"queue:defer=2", b"queue:hold=1"]
    with pytest.raises(Exception, match="statd: "):
        client.service.commandRun({"item": [b64("statd")]}, 80, 24)


def test_command_output_has_crlf_line_ends(capi: CommandApi) -> None:
    seed(capi)
    out = run(capi.suds(), "queuestat")
    lines = out.split(b"\r\n")
    assert len(lines) > 2 and lines[-1] == b"" and not any(b"\n" in line for line in lines)
    assert lines[-2].split()[0] == b"total"


@pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")
def test_statd_and_crlf_with_php(capi: CommandApi) -> None:
    seed(capi)
    scenarios: list[dict[str, Any]] = [
        {"argv": ["statd", "-l"]},
        {"argv": ["statd", "-g", "queue"], "stop_when": "\r\n\r\n"},
        {"argv": ["queuestat"]},
    ]
    done = subprocess.run(["php", str(PHP_COMMANDS), capi.url + "?wsdl", "admin", "admin-pw"],
                          input=json.dumps(scenarios), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    listed, graph, queuestat = [base64.b64decode(o["output"]) for o in json.loads(done.stdout)]
    values = halonctl_stat_lines(listed.decode())
    assert values["mail-queue-count"] == 3 and values["queue:hold"] == 1
    assert graph.startswith(b"queue:active=0\r\nqueue:defer=2\r\nqueue:hold=1\r\n\r\n")
    for out in (listed, graph, queuestat):
        assert out.endswith(b"\r\n") and b"\n" not in out.replace(b"\r\n", b"")
