"""Every policy Decision at every SMTP stage is honoured, with a small in-test Flow."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import smtplib
from collections.abc import Callable

import pytest
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import HistoryEntry, QueueEntry
from appliance.queue.spool import Spool
from appliance.queue.store import metadata_of
from appliance.policy.flow import DataResult, Decision, DefaultFlow, SessionInfo, Verdict
from tests.integration.smtp.conftest import SmtpHarness

MESSAGE = b"Subject: test\r\nX-Strip: me\r\n\r\nbody\r\n"


@dataclasses.dataclass
class ScriptedFlow(DefaultFlow):
    """Answers per stage from fixed verdicts; records what it saw."""

    on_connect: Verdict = Verdict()
    on_mail: Verdict = Verdict()
    on_rcpt: dict[str, Verdict] = dataclasses.field(default_factory=dict)
    on_data: DataResult = dataclasses.field(default_factory=DataResult)
    seen: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def connect(self, session: SessionInfo) -> Verdict:
        self.seen.append(("connect", session.client_ip))
        return self.on_connect

    def mail_from(self, session: SessionInfo, sender: str) -> Verdict:
        self.seen.append(("mail", f"{session.helo}|{sender}"))
        return self.on_mail

    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict:
        self.seen.append(("rcpt", recipient))
        return self.on_rcpt.get(recipient, Verdict())

    def data(self, session: SessionInfo, message: bytes) -> DataResult:
        self.seen.append(("data", ",".join(session.recipients)))
        return self.on_data


def queued(store: Store) -> list[QueueEntry]:
    with store.transaction(read_only=True) as session:
        return list(session.scalars(select(QueueEntry).order_by(QueueEntry.id)))


def history(store: Store) -> list[HistoryEntry]:
    with store.transaction(read_only=True) as session:
        return list(session.scalars(select(HistoryEntry).order_by(HistoryEntry.id)))


def envelope(port: int, rcpts: list[str]) -> tuple[smtplib.SMTP, list[tuple[int, bytes]]]:
    client = smtplib.SMTP("127.0.0.1", port)
    client.ehlo("helo.test")
    replies = [client.mail("s@example.com")]
    replies += [client.rcpt(r) for r in rcpts]
    return client, replies


@pytest.mark.parametrize("verdict,code", [
    (Verdict(decision=Decision.REJECT), 554),
    (Verdict(decision=Decision.DEFER, code=421, text="busy"), 421),
])
def test_connect_verdict(smtp_server: Callable[..., SmtpHarness], verdict: Verdict, code: int) -> None:
    harness = smtp_server(flow=ScriptedFlow(on_connect=verdict))
    with pytest.raises(smtplib.SMTPConnectError) as err:
        smtplib.SMTP("127.0.0.1", harness.port)
    assert err.value.smtp_code == code


@pytest.mark.parametrize("verdict,reply", [
    (Verdict(decision=Decision.REJECT, code=553, text="no such sender"), (553, b"no such sender")),
    (Verdict(decision=Decision.DEFER), (451, b"4.7.1 Sender deferred, try again later")),
])
def test_mail_verdict(smtp_server: Callable[..., SmtpHarness], store: Store,
                      verdict: Verdict, reply: tuple[int, bytes]) -> None:
    flow = ScriptedFlow(on_mail=verdict)
    harness = smtp_server(flow=flow)
    client, replies = envelope(harness.port, [])
    assert replies[0] == reply
    assert client.rcpt("r@example.org")[0] == 503  # no sender was set
    client.quit()
    assert ("mail", "helo.test|s@example.com") in flow.seen


def test_rcpt_verdicts_per_recipient_and_transports(smtp_server: Callable[..., SmtpHarness], store: Store) -> None:
    flow = ScriptedFlow(on_rcpt={
        "no@example.org": Verdict(decision=Decision.REJECT),
        "later@example.org": Verdict(decision=Decision.DEFER, code=450, text="greylisted"),
        "routed@example.org": Verdict(transport="special"),
    })
    harness = smtp_server(flow=flow)
    client, replies = envelope(harness.port, ["no@example.org", "later@example.org",
                                              "routed@example.org", "ok@example.org"])
    assert [r[0] for r in replies] == [250, 550, 450, 250, 250]
    assert replies[2] == (450, b"greylisted")
    assert client.data(MESSAGE)[0] == 250
    client.quit()
    assert ("data", "routed@example.org,ok@example.org") in flow.seen
    assert [(e.rcpt, e.transport) for e in queued(store)] == [
        ("routed@example.org", "special"), ("ok@example.org", "default")]


@pytest.mark.parametrize("decision,code", [(Decision.REJECT, 550), (Decision.DEFER, 451)])
def test_data_reject_and_defer_queue_nothing(smtp_server: Callable[..., SmtpHarness], store: Store,
                                              spool: Spool, decision: Decision, code: int) -> None:
    harness = smtp_server(flow=ScriptedFlow(on_data=DataResult(verdict=Verdict(decision=decision))))
    client, _ = envelope(harness.port, ["r@example.org"])
    assert client.data(MESSAGE)[0] == code
    client.quit()
    assert queued(store) == [] and history(store) == [] and spool.all_paths() == []


def test_data_quarantine_holds_with_action(smtp_server: Callable[..., SmtpHarness], store: Store) -> None:
    verdict = Verdict(decision=Decision.QUARANTINE, quarantine="spam")
    harness = smtp_server(flow=ScriptedFlow(on_data=DataResult(verdict=verdict)))
    client, _ = envelope(harness.port, ["a@example.org", "b@example.org"])
    assert client.data(MESSAGE)[0] == 250
    client.quit()
    assert [(e.state, e.action, e.quarantine) for e in queued(store)] == [("HOLD", "QUARANTINE", "spam")] * 2


def test_rcpt_quarantine_holds_the_message(smtp_server: Callable[..., SmtpHarness], store: Store) -> None:
    flow = ScriptedFlow(on_rcpt={"q@example.org": Verdict(decision=Decision.QUARANTINE)})
    harness = smtp_server(flow=flow)
    client, _ = envelope(harness.port, ["q@example.org"])
    assert client.data(MESSAGE)[0] == 250
    client.quit()
    assert [(e.state, e.action, e.quarantine) for e in queued(store)] == [("HOLD", "QUARANTINE", "quarantine")]


def test_rcpt_delete_drops_one_recipient_into_history(smtp_server: Callable[..., SmtpHarness], store: Store) -> None:
    flow = ScriptedFlow(on_rcpt={"gone@example.org": Verdict(decision=Decision.DELETE)})
    harness = smtp_server(flow=flow)
    client, replies = envelope(harness.port, ["gone@example.org", "kept@example.org"])
    assert [r[0] for r in replies] == [250, 250, 250]
    code, reply = client.data(MESSAGE)
    client.quit()
    assert code == 250
    msgid = reply.decode().rsplit(" ", 1)[1]
    assert [(e.rcpt, e.msgid) for e in queued(store)] == [("kept@example.org", msgid)]
    assert [(h.rcpt, h.action, h.msgid) for h in history(store)] == [("gone@example.org", "DELETE", msgid)]


def test_data_changes_headers_metadata_and_recipient_transports(
    smtp_server: Callable[..., SmtpHarness], store: Store, spool: Spool,
) -> None:
    result = DataResult(add_headers=[("X-Scanned", "yes")], remove_headers=["x-strip"],
                        metadata={"score": "3", "tenant": "acme"},
                        recipient_transports={"b@example.org": "outbound2"})
    harness = smtp_server(flow=ScriptedFlow(on_data=result))
    client, _ = envelope(harness.port, ["a@example.org", "b@example.org"])
    assert client.data(MESSAGE)[0] == 250
    client.quit()
    entries = queued(store)
    assert [e.transport for e in entries] == ["default", "outbound2"]
    with store.transaction(read_only=True) as session:
        meta = metadata_of(session, [e.id for e in entries])
    assert meta == {e.id: {"score": "3", "tenant": "acme"} for e in entries}
    parsed = email.message_from_bytes(spool.read(entries[0].path), policy=email.policy.default)
    assert parsed["X-Scanned"] == "yes" and parsed["X-Strip"] is None
    assert parsed["Subject"] == "test" and parsed["Received"] is not None


class Broken(DefaultFlow):
    def rcpt_to(self, session: SessionInfo, recipient: str) -> Verdict:
        raise RuntimeError("script crashed")


def test_a_failing_flow_answers_451_not_500_and_the_session_goes_on(
    smtp_server: Callable[..., SmtpHarness], store: Store,
) -> None:
    harness = smtp_server(flow=Broken())
    client, replies = envelope(harness.port, ["r@example.org"])
    assert replies[1][0] == 451 and b"script crashed" not in replies[1][1]
    assert client.noop()[0] == 250
    client.quit()
    assert queued(store) == []


def test_a_failing_connect_stage_answers_421(smtp_server: Callable[..., SmtpHarness]) -> None:
    class BrokenConnect(DefaultFlow):
        def connect(self, session: SessionInfo) -> Verdict:
            raise RuntimeError("boom")

    harness = smtp_server(flow=BrokenConnect())
    with pytest.raises(smtplib.SMTPConnectError) as err:
        smtplib.SMTP("127.0.0.1", harness.port)
    assert err.value.smtp_code == 421
