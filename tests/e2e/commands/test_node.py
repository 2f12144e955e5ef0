"""A real node: mail through SMTP to an aiosmtpd sink, then searchlog over SOAP (zeep and PHP)
finds the message's whole story in the node's rotated log files by its msgid."""

from __future__ import annotations

import base64
import json
import shutil
import smtplib
import re
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from aiosmtpd.controller import Controller

from appliance.nodelog import LOG_NAME, line_time
from tests.e2e.commands.conftest import PHP_COMMANDS, argv_bytes, poll_to_end, poll_until, run_to_end
from tests.support.node import RunningNode
from tests.support.postgres import free_port
from tests.support.wait import wait_until

# Small files so that a handful of messages rotate the log several times.
CONFIG = """
[log]
max_bytes = 1024
backup_count = 50
"""


class Sink:
    def __init__(self) -> None:
        self.rcpts: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.rcpts.extend(envelope.rcpt_tos)
        return "250 OK sink"


@pytest.fixture
def sink() -> Iterator[tuple[int, Sink]]:
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()


def send(node: RunningNode, rcpts: list[str], subject: str) -> str:
    """Send one message; its msgid from the 250 reply (`queued as <msgid>`)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@sender.example", ", ".join(rcpts), subject
    msg.set_content("the story of a message\n")
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("alice@sender.example")
        for rcpt in rcpts:
            smtp.rcpt(rcpt)
        code, reply = smtp.data(msg.as_bytes())
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def client(node: RunningNode) -> zeep.Client:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))


def test_searchlog_finds_a_delivered_messages_story_across_rotated_files(
        tmp_path: Path, sink: tuple[int, Sink]) -> None:
    port, handler = sink
    with RunningNode(tmp_path, config_text=CONFIG, relay=("127.0.0.1", port)) as node:
        before = time.time()
        filler = [send(node, [f"f{i}@dest.example"], f"filler {i}") for i in range(4)]
        msgid = send(node, ["a@dest.example", "b@other.example"], "the one")
        filler += [send(node, [f"g{i}@dest.example"], f"filler {i}") for i in range(4)]
        wait_until(lambda: len(handler.rcpts) == 10, what="delivery of every message to the sink")
        soap = client(node)
        log_dir = node.data_dir / "log"
        wait_until(lambda: len(list(log_dir.glob(f"{LOG_NAME}.*"))) >= 3, what="the log to rotate")

        def story() -> list[str] | None:
            out, fault = run_to_end(soap, ["searchlog", "--", msgid])
            lines = out.decode().splitlines()
            return lines if sum(" delivered " in l for l in lines) == 2 else None

        lines = wait_until(story, what="both deliveries in the log")
        assert not any("appliance.commands" in l for l in lines)  # searches do not find themselves
        accepted = [l for l in lines if f": accepted {msgid} " in l]
        assert len(accepted) == 1
        qids = [w.split(":")[1] for w in accepted[0].split() if w.startswith(f"{msgid}:")]
        assert len(qids) == 2
        for qid, rcpt in zip(qids, ["a@dest.example", "b@other.example"]):
            [delivered] = [l for l in lines if f"delivered {msgid}:{qid} to <{rcpt}>" in l]
            assert "250 OK sink" in delivered
        # One writer, several processes: each line names the child that logged it.
        children = node.children()
        assert all(re.search(r" appliance/(smtp-\d+|delivery|api|housekeeping)\[(\d+)\]: appliance\.", l)
                   for l in lines)
        assert {int(m.group(1)) for l in lines
                for m in [re.search(r"\[(\d+)\]: ", l)] if m} <= set(children.values())
        assert any(" appliance/delivery[" in l for l in lines)
        times = [line_time(l.encode()) for l in lines]
        # In file order; threads may stamp a record a moment before another one they write first.
        assert all(t is not None and t >= before - 1 for t in times)
        # The story spans more than one file: it is found across rotations.
        holding = {p.name for p in log_dir.iterdir() if msgid.encode() in p.read_bytes()}
        assert len(holding) >= 1 and len(list(log_dir.iterdir())) >= 4

        # -a: only lines from TIME on; -n: at most MAX.
        delivered_at = max(t for l, t in zip(lines, times) if " delivered " in l and t is not None)
        out, _ = run_to_end(soap, ["searchlog", "-a", str(delivered_at), "--", msgid])
        after = out.decode().splitlines()
        assert any(f"delivered {msgid}:" in l for l in after)
        assert not any(f"accepted {msgid}" in l for l in after)
        out, _ = run_to_end(soap, ["searchlog", "-n", "1", "--", msgid])
        assert out.decode().splitlines() == lines[:1]

        # -f follows the live log until stopped: a new message's lines arrive while it runs.
        cid = soap.service.commandRun(argv_bytes("searchlog", "-f", "--", "@late.example"), 80, 24)
        late = send(node, ["z@late.example"], "late")
        out = poll_until(soap, cid, f"delivered {late}:".encode())
        soap.service.commandStop(cid)
        out += poll_to_end(soap, cid)[0]
        assert f"accepted {late} " in out.decode()

        # The node's commands over PHP's SoapClient too.
        if shutil.which("php"):
            done = subprocess.run(
                ["php", str(PHP_COMMANDS), node.soap_url + "?wsdl", "admin", node.admin_password],
                input=json.dumps([{"argv": ["searchlog", "--", msgid]}, {"argv": ["queuestat"]},
                                  {"argv": ["statd", "-g", "queue"], "push": "q"}]),
                capture_output=True, text=True, timeout=60, check=True)
            php = json.loads(done.stdout)
            assert base64.b64decode(php[0]["output"]).decode().splitlines() == lines
            assert base64.b64decode(php[1]["output"]).decode().splitlines()[-1].split() == [
                "total", "0", "0", "0", "0"]
            assert "active=" in base64.b64decode(php[2]["output"]).decode()
            assert "exit 0" in php[2]["fault"][1]
