"""R1: kill -9 a node under 32 concurrent sessions; after a restart every 250'd message arrives."""

from __future__ import annotations

import re
import smtplib
import threading
from pathlib import Path

from tests.e2e.delivery.sink import Sink
from tests.support.node import RunningNode
from tests.support.wait import wait_until

SESSIONS = 32
PER_SESSION = 40  # bound: at most 1,280 messages
MSGID = re.compile(rb"\bid ([0-9a-f-]{36})\b")


def _sender(port: int, index: int, acked: list[str], lock: threading.Lock,
            stop: threading.Event) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo(f"load{index}.example")
            for n in range(PER_SESSION):
                if stop.is_set():
                    return
                client.mail(f"s{index}@example.com")
                client.rcpt(f"r{index}-{n}@example.org")
                code, reply = client.data(f"Subject: crash {index}/{n}\r\n\r\nbody\r\n".encode())
                if code == 250:
                    with lock:
                        acked.append(reply.decode().rsplit(" ", 1)[1])
    except (OSError, smtplib.SMTPException):
        return  # the node died under us: what was not acknowledged may be lost


def test_every_acknowledged_message_survives_kill_9(tmp_path: Path) -> None:
    with Sink() as sink:
        node = RunningNode(tmp_path, relay=("127.0.0.1", sink.port)).start()
        try:
            acked: list[str] = []
            lock, stop = threading.Lock(), threading.Event()
            threads = [threading.Thread(target=_sender, args=(node.smtp_port, i, acked, lock, stop))
                       for i in range(SESSIONS)]
            for thread in threads:
                thread.start()
            wait_until(lambda: len(acked) >= 300 or not any(t.is_alive() for t in threads),
                       timeout=60, interval=0.01, what="300 acknowledged messages")
            node.kill()  # SIGKILL in the middle of the load
            stop.set()
            for thread in threads:
                thread.join(30)
            with lock:
                acknowledged = set(acked)
            assert len(acknowledged) >= 50, "the load did not get going before the kill"
            assert len(acknowledged) < SESSIONS * PER_SESSION, "the kill came after the load"

            node.start()

            def delivered() -> set[str]:
                return {m.group(1).decode() for msg in list(sink.messages)
                        for m in [MSGID.search(msg.content)] if m}

            wait_until(lambda: acknowledged <= delivered(), timeout=120)
        finally:
            node.stop()
    assert acknowledged <= delivered()
