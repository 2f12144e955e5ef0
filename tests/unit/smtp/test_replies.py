"""Reply constants and policy verdict replies."""

from __future__ import annotations

import re

from appliance.smtp import replies


def test_every_constant_is_a_well_formed_reply() -> None:
    for name in dir(replies):
        value = getattr(replies, name)
        if name.isupper() and isinstance(value, str):
            assert re.fullmatch(r"[2-5]\d\d [245]\.\d{1,3}\.\d{1,3} [^\r\n]+", value), name


def test_verdict_reply_uses_the_scripts_code_when_in_the_right_class() -> None:
    assert replies.verdict_reply(554, "go away", replies.RCPT_REJECTED) == "554 go away"
    assert replies.verdict_reply(0, "", replies.RCPT_REJECTED) == replies.RCPT_REJECTED
    assert replies.verdict_reply(421, "later", replies.DATA_DEFERRED) == "421 later"


def test_verdict_reply_never_turns_a_reject_into_success_or_injects_lines() -> None:
    assert replies.verdict_reply(250, "ok", replies.DATA_REJECTED).startswith("550 ")
    assert replies.verdict_reply(451, "x", replies.DATA_REJECTED).startswith("550 ")
    assert replies.verdict_reply(550, "a\r\n250 OK", replies.MAIL_REJECTED) == "550 a 250 OK"
