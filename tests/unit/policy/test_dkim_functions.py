"""dkim_sign() and dkim_skip(): a script's per-message choice of signing key, as metadata."""

from __future__ import annotations

from appliance.policy.flow import Decision, DeliveryInfo, SessionInfo
from appliance.policy.functions import Functions
from appliance.policy.scripted import ScriptedFlow

SCRIPT = """
function mail_from(s, sender)
  if sender:find("^skip@") then dkim_skip() end
end
function data(s, msg)
  if msg.subject == "choose" then dkim_sign("Example.COM", "S2") end
  if msg.subject == "hostile" then dkim_sign("../../etc", "s1") end
end
function pre_delivery(e)
  dkim_skip()
end
"""


def _data(flow: ScriptedFlow, sender: str, subject: str) -> tuple[Decision, dict[str, str]]:
    session = SessionInfo(listener="in", client_ip="127.0.0.1")
    flow.mail_from(session, sender)
    result = flow.data(session, f"From: {sender}\r\nSubject: {subject}\r\n\r\nx\r\n".encode())
    return result.verdict.decision, result.metadata


def test_choices_are_recorded_in_the_message_metadata() -> None:
    flow = ScriptedFlow(SCRIPT, name="t", functions=Functions())
    assert _data(flow, "a@example.com", "choose") == (Decision.ACCEPT, {"dkim_sign": "example.com:s2"})
    assert _data(flow, "skip@example.com", "plain") == (Decision.ACCEPT, {"dkim_sign": "skip"})
    assert _data(flow, "a@example.com", "plain") == (Decision.ACCEPT, {})


def test_hostile_names_and_per_recipient_use_fail_safely() -> None:
    flow = ScriptedFlow(SCRIPT, name="t", functions=Functions())
    decision, metadata = _data(flow, "a@example.com", "hostile")
    assert decision is Decision.DEFER and "dkim_sign" not in metadata  # the data flow's safe default
    entry = DeliveryInfo(queueid=1, msgid="m", sender="a@example.com", recipient="b@x", transport="default",
                         listener="in", sasl="", retries=0, metadata={})
    assert flow.pre_delivery(entry).decision is Decision.DEFER  # refused there: one choice per message
