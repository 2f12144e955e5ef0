"""Commands over SOAP with zeep against the live gateway: every command, polling to the end-fault,
input, stopping a follower, bad argv, unknown commands, other users' ids, long output, access."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import zeep
from sqlalchemy import select

from appliance.commands.runner import Limits
from appliance.db.models import AuditRecord
from appliance.nodelog import LOG_NAME, NodeLog
from appliance.stats.sampler import Sampler
from appliance.stats.sources import Probe
from appliance.types import QueueState
from tests.e2e.commands.conftest import (
    CommandApi, running_api, poll_to_end, poll_until, run_to_end,
)
from tests.unit.commands.test_network_commands import ZONE, FakeResolver


@pytest.fixture
def capi(tmp_path: Path, template_db: Path) -> Iterator[CommandApi]:
    """The live server with a fake DNS zone, the real sampler and a 64 kB output limit."""
    with running_api(tmp_path, template_db, resolver=FakeResolver(ZONE),
                     limits=Limits(max_output=64_000),
                     sampler_for=lambda store: Sampler(Probe(store=store))) as api:
        yield api


def fault_of(call: object, *args: object) -> tuple[str, str]:
    with pytest.raises(zeep.exceptions.Fault) as info:
        call(*args)  # type: ignore[operator]
    return info.value.code.rpartition(":")[2], info.value.message


def argv(*words: str) -> dict[str, list[bytes]]:
    return {"item": [w.encode() for w in words]}


def log_lines(api: CommandApi, *lines: str) -> None:
    logger = logging.getLogger("appliance.e2e.commands")
    logger.propagate = False
    node_log = NodeLog(api.log_dir, logger=logger, hostname="node.test")
    node_log.start()
    try:
        for line in lines:
            logger.info(line)
    finally:
        node_log.stop()


def test_command_list(capi: CommandApi) -> None:
    listed = capi.zeep().service.commandList()
    assert [c["name"] for c in listed] == ["searchlog", "previewmessage", "statd", "queuestat",
                                           "dnslookup", "smtpping"]
    assert listed[0]["usage"] == "searchlog [-a TIME] [-f] [-n MAX] -- TEXT"
    assert all(c["description"] for c in listed)


def test_every_command_runs_to_its_end_fault(capi: CommandApi) -> None:
    client = capi.zeep()
    msgid = str(uuid.uuid4())
    log_lines(capi, f"received {msgid} from 192.0.2.1", "unrelated line", f"queued {msgid}:1")
    out, fault = run_to_end(client, ["searchlog", "--", msgid])
    assert [l.split(": ", 2)[2] for l in out.decode().splitlines()] == [
        f"received {msgid} from 192.0.2.1", f"queued {msgid}:1"]
    assert "has ended (exit 0)" in fault

    message = EmailMessage()
    message["Subject"] = "Grüße"
    message.set_content("text body")
    message.add_alternative("<b>html body</b>", subtype="html")
    path = capi.spool.write(msgid, message.as_bytes())
    out, _ = run_to_end(client, ["previewmessage", path, "MARK"])
    assert "Subject: Grüße\nMIME-Version: 1.0\n" in out.decode()
    assert "MARK|TEXT\ntext body\nMARK|HTML\n<b>html body</b>\nMARK|ATTACHMENTS\n" in out.decode()

    capi.queue(state=QueueState.DEFER)
    out, _ = run_to_end(client, ["queuestat"])
    assert out.decode().splitlines()[1].split() == ["default", "0", "1", "0", "1"]

    out, _ = run_to_end(client, ["dnslookup", "example.org", "MX"])
    assert out.startswith(b"example.org.\t300\tIN\tMX\t10 mx1.example.org.\n")

    out, fault = run_to_end(client, ["smtpping", "127.0.0.1:1"])
    assert out == b"connect to 127.0.0.1 port 1 failed: Connection refused\n"


def test_statd_streams_live_values_until_q_is_pushed(capi: CommandApi) -> None:
    client = capi.zeep()
    cid = client.service.commandRun(argv("statd", "-g", "queue"), 80, 24)
    out = poll_until(client, cid, b"\r\n\r\n", timeout=10)  # returned read as LF
    assert out.decode().split("\n\n")[0].splitlines() == [
        "queue:active=0", "queue:defer=0", "queue:hold=0"]
    client.service.commandPush(cid, b"q")
    rest, fault = poll_to_end(client, cid)
    assert "exit 0" in fault


def test_stop_a_following_searchlog(capi: CommandApi) -> None:
    client = capi.zeep()
    log_lines(capi, "first msgid-follow")
    cid = client.service.commandRun(argv("searchlog", "-f", "--", "msgid-follow"), 120, 40)
    poll_until(client, cid, b"first msgid-follow\r\n")
    log_lines(capi, "second msgid-follow", "other")
    poll_until(client, cid, b"second msgid-follow\r\n")
    client.service.commandTermsize(cid, 200, 50)
    client.service.commandStop(cid)
    out, fault = poll_to_end(client, cid)
    assert b"other" not in out and "stopped" in fault


def test_interrupt_by_signal_and_by_pushing_ctrl_c(capi: CommandApi) -> None:
    client = capi.zeep()
    for how in ("signal", "push"):
        cid = client.service.commandRun(argv("searchlog", "-f", "--", "nothing"), 80, 24)
        if how == "signal":
            client.service.commandSignal(cid, "interrupt")
        else:
            client.service.commandPush(cid, b"\x03")
        assert "interrupted" in poll_to_end(client, cid)[1]
    cid = client.service.commandRun(argv("searchlog", "-f", "--", "nothing"), 80, 24)
    assert fault_of(client.service.commandSignal, cid, "SIGWHAT")[1].startswith("unknown signal")
    client.service.commandStop(cid)


def test_bad_argv_and_unknown_commands_fault_and_start_nothing(capi: CommandApi) -> None:
    client = capi.zeep()
    cases = {
        ("sh", "-c", "id"): ("Client.NotFound", "unknown command 'sh'"),
        ("/bin/ls",): ("Client.NotFound", "unknown command '/bin/ls'"),
        ("searchlog", "-n", "x", "--", "a"): ("Client.InvalidInput", "searchlog: "),
        ("previewmessage", "../../etc/passwd"): ("Client.InvalidInput", "previewmessage: "),
        ("dnslookup", "a;reboot"): ("Client.InvalidInput", "dnslookup: not a domain name"),
        ("statd",): ("Client.InvalidInput", "statd: "),
        ("queuestat", "--all"): ("Client.InvalidInput", "queuestat: "),
    }
    for words, (code, text) in cases.items():
        got = fault_of(client.service.commandRun, argv(*words), 80, 24)
        assert got[0] == code and got[1].startswith(text), (words, got)
    assert fault_of(client.service.commandRun, argv(), 80, 24)[1] == "argv is empty: name a command"
    assert capi.runner.running() == 0


def test_another_users_command_is_not_found(capi: CommandApi) -> None:
    admin, operator = capi.zeep(), capi.zeep("operator")
    msgid = str(uuid.uuid4())
    capi.queue(rcpts=("someone@tenant.example",))
    cid = admin.service.commandRun(argv("searchlog", "-f", "--", msgid), 80, 24)
    for call, args in ((operator.service.commandPoll, (cid,)), (operator.service.commandPush, (cid, b"q")),
                       (operator.service.commandStop, (cid,)), (operator.service.commandSignal, (cid, "kill")),
                       (operator.service.commandTermsize, (cid, 80, 24))):
        assert fault_of(call, *args) == ("Client.NotFound", f"no command '{cid}'")
    assert fault_of(admin.service.commandPoll, "0123456789abcdef") == (
        "Client.NotFound", "no command '0123456789abcdef'")
    admin.service.commandStop(cid)
    assert "stopped" in poll_to_end(admin, cid)[1]


def test_over_long_output_is_cut_and_ends(capi: CommandApi) -> None:
    log_lines(capi, *(f"line {i:05d} msgid-long " + "x" * 100 for i in range(2000)))
    out, fault = run_to_end(capi.zeep(), ["searchlog", "--", "msgid-long"])
    # `out` is read as LF; on the wire every LF came as CR LF, the limit counting both bytes.
    assert len(out) + out.count(b"\n") == 64_000 + len(b"\r\n[output cut at 64000 bytes; command ended]\r\n")
    assert out.endswith(b"\n[output cut at 64000 bytes; command ended]\n")
    assert "output limit" in fault


def test_access_levels_patterns_and_restriction(capi: CommandApi) -> None:
    operator = capi.zeep("operator")
    inside = capi.queue(rcpts=("x@tenant.example",))
    outside = capi.queue(rcpts=("y@elsewhere.example",))
    with capi.store.transaction(read_only=True) as session:
        from appliance.db.models import QueueEntry

        rows = {e.id: e for e in session.scalars(select(QueueEntry))}
    in_msgid, in_path = rows[inside[0]].msgid, rows[inside[0]].path
    out_msgid, out_path = rows[outside[0]].msgid, rows[outside[0]].path
    log_lines(capi, f"queued {in_msgid}:{inside[0]}", f"queued {out_msgid}:{outside[0]}")

    out, _ = run_to_end(operator, ["searchlog", "--", f"{in_msgid}:{inside[0]}"])
    assert out.decode().endswith(f"queued {in_msgid}:{inside[0]}\n")
    assert run_to_end(operator, ["previewmessage", in_path, "M"])[0].startswith(b"Subject: hello\n")
    assert run_to_end(operator, ["queuestat"])[0].startswith(b"TRANSPORT")
    refused = {
        ("searchlog", "--", out_msgid): ("Client.NotFound", f"no message {out_msgid}"),
        ("searchlog", "--", "queued"): ("Client.Forbidden", "searchlog: a restricted user may only name a message id"),
        ("previewmessage", out_path, "M"): ("Client.NotFound", f"no such spool file: '{out_path}'"),
        ("dnslookup", "example.org"): ("Client.Forbidden", "access denied: this user may not run 'dnslookup example.org'"),
        ("searchlog", "-f", "--", in_msgid): ("Client.Forbidden", "access denied: this user may not run"),
    }
    for words, (code, text) in refused.items():
        got = fault_of(operator.service.commandRun, argv(*words), 80, 24)
        assert got[0] == code and got[1].startswith(text), (words, got)
    # A read-only user runs the commands that only read, and no other.
    viewer = capi.zeep("viewer")
    assert run_to_end(viewer, ["queuestat"])[0].startswith(b"TRANSPORT")
    assert fault_of(viewer.service.commandRun, argv("dnslookup", "example.org"), 80, 24) == (
        "Client.Forbidden", "access denied: this user may not run 'dnslookup example.org'")
    assert fault_of(capi.zeep("tenant").service.commandList)[0] == "Client.Forbidden"

    with capi.store.transaction(read_only=True) as session:
        audits = session.scalars(select(AuditRecord).where(AuditRecord.operation == "commandRun")
                                 .order_by(AuditRecord.id)).all()
    ran = [(a.username, " ".join(json.loads(a.arguments).get("argv", [])), a.outcome) for a in audits]
    assert ("operator", "queuestat", "ok") in ran
    assert ("operator", "dnslookup example.org",
            "fault: access denied: this user may not run 'dnslookup example.org'") in ran
    assert ("operator", f"searchlog -- {out_msgid}", f"fault: no message {out_msgid}") in ran
    assert ("viewer", "queuestat", "ok") in ran
    assert any(u == "viewer" and o.startswith("fault: access denied") for u, _, o in ran)
