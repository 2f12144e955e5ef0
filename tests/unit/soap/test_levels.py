"""Access levels (appliance.access.levels) and audit argument encoding (appliance.access.audit)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from appliance.access.audit import encode_arguments
from appliance.access.levels import AccessLevel
from appliance.errors import Forbidden


@dataclass
class _User:
    role: str
    operations: str = ""
    restriction: str = ""
    command_patterns: str = ""


def test_admin_may_call_everything() -> None:
    level = AccessLevel.of(_User("admin"))
    assert level.allows("userAdd", mutating=True) and level.allows("mailQueueDeleteBulk", mutating=True)
    assert level.allows_command(["anything", "at", "all"], reads_only=False)


def test_readonly_reads_only_and_never_manages_users() -> None:
    level = AccessLevel.of(_User("readonly"))
    assert level.allows("mailQueue", mutating=False)
    assert not level.allows("mailQueueDelete", mutating=True)
    assert not level.allows("userList", mutating=False)
    assert level.allows("login", mutating=False)
    with pytest.raises(Forbidden, match="may not call mailQueueHold"):
        level.check("mailQueueHold", mutating=True)
    # commandRun, for the commands that only read (log search, counters, the queue's figures).
    assert level.allows("commandRun", mutating=True)
    assert level.allows_command(["searchlog", "--", "x"], reads_only=True)
    assert not level.allows_command(["smtpping", "mx.example"], reads_only=False)
    assert not level.allows("scriptTest", mutating=False)


def test_custom_level_lists_operations_restriction_and_commands() -> None:
    level = AccessLevel.of(_User("custom", json.dumps(["mailQueue", "mailQueueDelete", "userAdd"]),
                                 " to~%@a.example ", json.dumps(["searchlog *", "queuestat"])))
    assert level.restriction == "to~%@a.example"
    assert level.allows("mailQueueDelete", mutating=True)
    assert not level.allows("mailQueueHold", mutating=True)
    assert not level.allows("userAdd", mutating=True)  # admin-only, whatever the list says
    assert level.allows_command(["searchlog", "-n", "5", "--", "x"], reads_only=True)
    assert level.allows_command(["queuestat"], reads_only=True)
    assert not level.allows_command(["queuestat", "-x"], reads_only=True)  # patterns decide
    assert not level.allows_command(["statd", "-l"], reads_only=True)


def test_unknown_role_and_bad_json() -> None:
    with pytest.raises(Forbidden):
        AccessLevel.of(_User("root"))
    assert AccessLevel.of(_User("custom", "not json")).operations == frozenset()


def test_audit_arguments_redact_secrets() -> None:
    text = encode_arguments({"username": "u", "password": "hunter2", "data": b"\x00" * 10})
    assert "hunter2" not in text and json.loads(text) == {
        "data": "<10 bytes>", "password": "***", "username": "u"}


def test_node_wide_figures_are_refused_only_with_a_restriction() -> None:
    ops = json.dumps(["graphList", "statList", "hslRate", "systemStatus"])
    restricted = AccessLevel.of(_User("custom", operations=ops, restriction="to~%@t.example"))
    open_custom = AccessLevel.of(_User("custom", operations=ops))
    for operation in ("graphList", "statList", "hslRate"):
        assert open_custom.allows(operation, mutating=False)
        assert not restricted.allows(operation, mutating=False)
        with pytest.raises(Forbidden, match=f"{operation} shows node-wide figures"):
            restricted.check(operation, mutating=False)
    assert restricted.allows("systemStatus", mutating=False)  # scoped, not refused
    assert AccessLevel.of(_User("readonly")).allows("graphList", mutating=False)


def test_nested_secret_arguments_are_redacted() -> None:
    encoded = json.loads(encode_arguments({"envelope": {"sender": "a", "saslpassword": "pw"},
                                           "items": [{"token": "t", "k": b"xy"}]}))
    assert encoded == {"envelope": {"saslpassword": "***", "sender": "a"},
                       "items": [{"k": "<2 bytes>", "token": "***"}]}
