"""ScriptedFlow: every flow's decisions, DATA changes, metadata, compile-once, the example script."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config.document import parse
from appliance.policy.flow import DeliveryInfo, DeliveryOutcome, Decision, SessionInfo, Verdict
from appliance.policy.functions import Functions
from appliance.policy.memory import MemoryCounters, MemoryRates
from appliance.policy.router import FailedFlow, FlowCache
from appliance.policy.scripted import ScriptedFlow

EXAMPLE = Path(__file__).resolve().parents[3] / "appliance/policy/examples/ratelimit.lua"


class Recorder:
    """Mailer and queue access that remember what they were asked."""

    def __init__(self) -> None:
        self.mails: list[tuple[str, str, str, str]] = []
        self.metadata: list[tuple[int, str, str]] = []

    def send(self, sender: str, recipient: str, subject: str, body: str) -> str:
        self.mails.append((sender, recipient, subject, body))
        return f"m{len(self.mails)}"

    def set_metadata(self, queueid: int, key: str, value: str, *, msgid: str = "") -> None:
        self.metadata.append((queueid, key, value))

    def queue_metric(self, field: str, value: str) -> int:
        return 7 if (field, value) == ("domain", "busy.example") else 0


def _session(**kw: object) -> SessionInfo:
    return SessionInfo(listener="in", client_ip="192.0.2.9", **kw)  # type: ignore[arg-type]


def _entry(**kw: object) -> DeliveryInfo:
    base = dict(queueid=5, msgid="m-1", sender="s@example.org", recipient="r@example.com",
                transport="default", listener="in", sasl="", retries=0, metadata={"a": "1"})
    base.update(kw)
    return DeliveryInfo(**base)  # type: ignore[arg-type]


def _flow(script: str, recorder: Recorder | None = None, counters: MemoryCounters | None = None) -> ScriptedFlow:
    rec = recorder or Recorder()
    return ScriptedFlow(script, name="t", functions=Functions(
        counters=counters or MemoryCounters(), rates=MemoryRates(), mailer=rec, queue=rec))


DECISIONS = [
    ("accept()", Verdict()),
    ("reject(554, '5.7.1 go away')", Verdict(decision=Decision.REJECT, code=554, text="5.7.1 go away")),
    ("reject()", Verdict(decision=Decision.REJECT, code=550)),
    ("defer(421, '4.7.0 later')", Verdict(decision=Decision.DEFER, code=421, text="4.7.0 later")),
    ("defer()", Verdict(decision=Decision.DEFER, code=451)),
    ("quarantine('spam')", Verdict(decision=Decision.QUARANTINE, quarantine="spam")),
    ("delete()", Verdict(decision=Decision.DELETE)),
    ("deliver('slow', {nexthop = '127.0.0.1:26', source_ip = '127.0.0.2'})",
     Verdict(decision=Decision.DELIVER, transport="slow", nexthop="127.0.0.1:26", source_ip="127.0.0.2")),
]


@pytest.mark.parametrize(("lua", "expected"), DECISIONS, ids=[d[0].split("(")[0] + str(i) for i, d in enumerate(DECISIONS)])
def test_rcpt_and_pre_delivery_return_each_decision(lua: str, expected: Verdict) -> None:
    flow = _flow(f"function rcpt_to(s, r) return {lua} end\nfunction pre_delivery(e) return {lua} end")
    assert flow.rcpt_to(_session(), "r@example.com") == expected
    assert flow.pre_delivery(_entry()) == expected


def test_connect_sees_client_and_decides() -> None:
    flow = _flow("function connect(s) if s.client_ip == '192.0.2.9' then return reject(554, 'blocked ' .. s.listener) end end")
    assert flow.connect(_session()) == Verdict(decision=Decision.REJECT, code=554, text="blocked in")
    assert flow.connect(SessionInfo(listener="in", client_ip="127.0.0.1")) == Verdict()


def test_connect_may_not_route() -> None:
    flow = _flow("function connect(s) return deliver('x') end")
    assert flow.connect(_session()) == Verdict()  # the safe default for connect


def test_auth_accepts_rejects_or_falls_through() -> None:
    flow = _flow("function auth(s, user, pass)\n"
                 " if user == 'svc' then return pass == 'pw' and accept() or reject() end\n"
                 "end")
    assert flow.auth(_session(), "svc", "pw") == Verdict()
    assert flow.auth(_session(), "svc", "no").decision == Decision.REJECT  # type: ignore[union-attr]
    assert flow.auth(_session(), "someone", "x") is None
    broken = _flow("function auth(s, u, p) error('db down') end")
    assert broken.auth(_session(), "svc", "pw") == Verdict(
        decision=Decision.DEFER, code=454, text="4.7.0 Temporary authentication failure")


def test_stages_without_handlers_accept() -> None:
    flow = _flow("x = 1")
    s = _session()
    assert flow.connect(s) == flow.mail_from(s, "a@b") == flow.rcpt_to(s, "c@d") == Verdict()
    assert flow.auth(s, "u", "p") is None
    assert flow.data(s, b"Subject: x\r\n\r\nbody").verdict == Verdict()
    assert flow.pre_delivery(_entry()) == Verdict()


def test_invalid_decisions_get_the_safe_default() -> None:
    for lua in ("'yes'", "reject(451)", "defer(550)", "{decision = 'maybe'}", "reject(550, 'a\\r\\nb')", "deliver()"):
        flow = _flow(f"function mail_from(s, sender) return {lua} end")
        assert flow.mail_from(_session(), "a@b").decision == Decision.DEFER, lua


def test_data_sees_headers_and_body_and_edits_headers() -> None:
    flow = _flow(
        "function data(s, msg)\n"
        "  if msg.body:find('VIAGRA', 1, true) then return reject(554, '5.7.1 spam') end\n"
        "  add_header('X-Subject-Seen', msg:header('SUBJECT'))\n"
        "  remove_header('X-Internal')\n"
        "  set_metadata('score', tostring(#msg.headers))\n"
        "  return accept()\n"
        "end")
    message = b"Subject: hello\r\n world\r\nX-Internal: 1\r\n\r\nhi there\r\n"
    result = flow.data(_session(recipients=["r@example.com"]), message)
    assert result.verdict == Verdict()
    assert result.add_headers == [("X-Subject-Seen", "hello world")]
    assert result.remove_headers == ["X-Internal"]
    assert result.metadata == {"score": "2"}
    spam = flow.data(_session(), b"Subject: x\r\n\r\nbuy VIAGRA\r\n")
    assert spam.verdict == Verdict(decision=Decision.REJECT, code=554, text="5.7.1 spam")
    assert spam.add_headers == []


def test_bad_header_from_script_defers() -> None:
    flow = _flow("function data(s, m) add_header('Bad: name', 'x') end")
    assert flow.data(_session(), b"\r\n\r\n").verdict.code == 451


def test_metadata_set_before_data_reaches_the_queue_entry() -> None:
    flow = _flow("function rcpt_to(s, r) set_metadata('first', r) end\n"
                 "function data(s, m) set_metadata('seen', get_metadata('first') or 'none') end")
    s = _session()
    flow.mail_from(s, "a@b")
    flow.rcpt_to(s, "r@example.com")
    assert flow.data(s, b"\r\n\r\n").metadata == {"first": "r@example.com", "seen": "r@example.com"}
    flow.mail_from(s, "next@b")  # a new transaction forgets it
    assert "first" not in flow.data(s, b"\r\n\r\n").metadata


def test_pre_and_post_delivery_metadata_go_to_the_queue() -> None:
    rec = Recorder()
    flow = _flow(
        "function pre_delivery(e)\n"
        "  set_metadata('tries', tostring(e.retries + 1))\n"
        "  if queue_metric('domain', e.recipient:match('@(.*)$')) > 5 then return deliver('overflow') end\n"
        "  return deliver('default', {nexthop = get_metadata('a') == '1' and '127.0.0.1:2600' or nil})\n"
        "end\n"
        "function post_delivery(e, o)\n"
        "  set_metadata('outcome', o.action .. ' ' .. o.code .. ' ' .. o.transfertime)\n"
        "  stat('delivery', o.action, e.recipient)\n"
        "end", rec)
    assert flow.pre_delivery(_entry()) == Verdict(decision=Decision.DELIVER, transport="default",
                                                  nexthop="127.0.0.1:2600")
    busy = flow.pre_delivery(_entry(recipient="r@busy.example"))
    assert busy == Verdict(decision=Decision.DELIVER, transport="overflow")
    rec.metadata.clear()
    flow.pre_delivery(_entry())
    flow.post_delivery(_entry(), DeliveryOutcome(action="DELIVER", code=250, text="ok", transfertime=0.5))
    assert rec.metadata == [(5, "tries", "1"), (5, "outcome", "DELIVER 250 0.5")]


def test_ratelimit_example_as_written() -> None:
    rec = Recorder()
    counters = MemoryCounters()
    flow = _flow(EXAMPLE.read_text(), rec, counters)
    alice = _session(sasl="alice", authenticated=True)
    for _ in range(100):
        assert flow.rcpt_to(alice, "x@example.com") == Verdict()
    over = flow.rcpt_to(alice, "x@example.com")
    assert over.decision == Decision.DEFER and over.code == 451 and "alice" in over.text
    for _ in range(3):
        assert flow.rcpt_to(alice, "x@example.com").decision == Decision.DEFER
    assert len(rec.mails) == 1  # once a day per user
    assert rec.mails[0][1] == "postmaster@example.com" and "alice" in rec.mails[0][2]
    # Later recipients of a message already let through are not counted; others are unaffected.
    assert flow.rcpt_to(_session(sasl="alice", authenticated=True, recipients=["a@x"]), "b@x") == Verdict()
    assert flow.rcpt_to(_session(sasl="bob", authenticated=True), "x@example.com") == Verdict()
    assert flow.rcpt_to(_session(), "x@example.com") == Verdict()  # not authenticated
    assert counters.counts[("policy", "sasl-message", "alice")] == 100
    assert counters.counts[("policy", "sasl-limited", "alice")] == 4


CONFIG = """
[scripts]
a = "function rcpt_to(s, r) return reject(550, 'a') end"
b = "function rcpt_to(s, r) return reject(550, 'b') end"
broken = "function rcpt_to(s, r"

[[listeners]]
id = "one"
port = 2525
script = "a"

[[listeners]]
id = "two"
port = 2526
script = "{two}"

[[listeners]]
id = "plain"
port = 2527
"""


def test_cache_compiles_once_per_script_text() -> None:
    cache = FlowCache(Functions())
    first = cache.build(parse(CONFIG.format(two="b")))
    assert cache.compilations == 2
    assert first.rcpt_to(SessionInfo(listener="one", client_ip="x"), "r").text == "a"
    assert first.rcpt_to(SessionInfo(listener="two", client_ip="x"), "r").text == "b"
    assert first.rcpt_to(SessionInfo(listener="plain", client_ip="127.0.0.1"), "r@example.org") == Verdict()
    assert first.rcpt_to(SessionInfo(listener="plain", client_ip="192.0.2.9"), "r@example.org").code == 554
    second = cache.build(parse(CONFIG.format(two="a")))  # a new revision: nothing new to compile
    assert cache.compilations == 2
    assert second.flows["one"] is first.flows["one"] is second.flows["two"]
    for _ in range(50):
        second.rcpt_to(SessionInfo(listener="one", client_ip="x"), "r")
    assert cache.compilations == 2


def test_a_script_that_does_not_compile_defers_its_listener() -> None:
    cache = FlowCache(Functions())
    flow = cache.build(parse(CONFIG.format(two="broken")))
    assert isinstance(flow.flows["two"], FailedFlow)
    assert flow.rcpt_to(SessionInfo(listener="two", client_ip="x"), "r").code == 451
    assert flow.connect(SessionInfo(listener="two", client_ip="x")) == Verdict()


def test_runs_errors_and_time_are_counted_per_stage() -> None:
    from appliance.stats.metrics import Instruments

    metrics = Instruments()
    rec = Recorder()
    flow = ScriptedFlow(
        "function rcpt_to(s, r) return accept() end\n"
        "function mail_from(s, sender) error('boom') end", name="t", metrics=metrics,
        functions=Functions(counters=MemoryCounters(), rates=MemoryRates(), mailer=rec, queue=rec))
    flow.rcpt_to(_session(), "r@example.com")
    flow.rcpt_to(_session(), "q@example.com")
    assert flow.mail_from(_session(), "a@b").decision == Decision.DEFER  # the safe default

    def value(name: str, stage: str) -> float:
        return metrics.registry.get_sample_value(name, {"stage": stage}) or 0.0

    assert value("appliance_policy_runs_total", "rcpt_to") == 2
    assert value("appliance_policy_errors_total", "rcpt_to") == 0
    assert value("appliance_policy_runs_total", "mail_from") == 1
    assert value("appliance_policy_errors_total", "mail_from") == 1
    assert value("appliance_policy_seconds_count", "rcpt_to") == 2
