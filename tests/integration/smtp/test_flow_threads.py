"""A listener's script runs off the event loop: a slow stage does not stall other sessions."""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Callable

import pytest

from appliance.db.engine import Store
from appliance.policy.flow import DataResult, DefaultFlow, SessionInfo, Verdict
from tests.integration.smtp.conftest import SmtpHarness

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # backend-independent


class SlowFlow(DefaultFlow):
    """MAIL FROM slow@... blocks until released (as a script waiting on http() would);
    records each session's stages in order."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: set[str] = set()
        self.stages: dict[int, list[str]] = {}

    def _seen(self, session: SessionInfo, stage: str) -> None:
        self.threads.add(threading.current_thread().name)
        self.stages.setdefault(session.client_port, []).append(stage)

    def connect(self, session: SessionInfo) -> Verdict:
        self._seen(session, "connect")
        return Verdict()

    def mail_from(self, session: SessionInfo, sender: str) -> Verdict:
        self._seen(session, "mail")
        if sender.startswith("slow@"):
            self.release.wait(30)
        return Verdict()

    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict:
        self._seen(session, "rcpt")
        return Verdict()

    def data(self, session: SessionInfo, message: bytes) -> DataResult:
        self._seen(session, "data")
        return DataResult()


def test_a_blocked_stage_lets_other_sessions_finish(smtp_server: Callable[..., SmtpHarness],
                                                    store: Store) -> None:
    flow = SlowFlow()
    harness = smtp_server(flow=flow, script="slow")
    slow = smtplib.SMTP("127.0.0.1", harness.port, timeout=30)
    slow.ehlo("slow.test")
    slow.putcmd("mail", "FROM:<slow@example.com>")  # its reply waits for the release
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", harness.port, timeout=10) as fast:
        fast.sendmail("fast@example.com", ["r@example.org"], b"Subject: x\r\n\r\nx\r\n")
    assert time.monotonic() - started < 10 and not flow.release.is_set()
    flow.release.set()
    assert slow.getreply()[0] == 250
    slow.rcpt("r@example.org")
    slow.data(b"Subject: y\r\n\r\ny\r\n")
    slow.quit()
    assert all(name.startswith("smtp-flow") for name in flow.threads)
    assert sorted(flow.stages.values()) == [["connect", "mail", "rcpt", "data"]] * 2


def test_a_listener_without_script_asks_its_flow_inline(smtp_server: Callable[..., SmtpHarness],
                                                        store: Store) -> None:
    flow = SlowFlow()
    harness = smtp_server(flow=flow)
    with smtplib.SMTP("127.0.0.1", harness.port, timeout=10) as client:
        client.sendmail("a@example.com", ["r@example.org"], b"Subject: x\r\n\r\nx\r\n")
    assert not any(name.startswith("smtp-flow") for name in flow.threads)
