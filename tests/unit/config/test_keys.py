"""Dotted keys: get, set (layout and comments kept), list, and their errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config.document import ConfigError, parse
from appliance.config.keys import config_keys, key_get, key_set
from appliance.errors import InvalidInput, NotFound

TEXT = """\
# the node
[node]
name = "n1"  # shown in clusterNodeList

[queue]
workers = 4  # delivery threads

[[listeners]]
id = "inbound"
port = 2525

[[listeners]]
id = "submission"
port = 2587
"""


def test_get_by_id_and_by_index() -> None:
    assert key_get(TEXT, "listeners.submission.port") == "2587"
    assert key_get(TEXT, "listeners.1.port") == "2587"
    assert key_get(TEXT, "queue.workers") == "4"
    assert key_get(TEXT, "queue.lease") == "600"  # a default is a key too
    assert key_get(TEXT, "queue.retry_schedule").startswith("[60, 300")


def test_unknown_key_is_not_found() -> None:
    with pytest.raises(NotFound):
        key_get(TEXT, "listeners.nope.port")
    with pytest.raises(InvalidInput):
        key_get(TEXT, "queue..workers")


def test_set_keeps_comments_and_layout() -> None:
    new = key_set(TEXT, "queue.workers", "8")
    assert new == TEXT.replace("workers = 4", "workers = 8")
    new = key_set(new, "listeners.submission.port", "2588")
    assert "port = 2588" in new and "# the node" in new and "# delivery threads" in new
    assert parse(new).listeners[1].port == 2588


def test_set_string_is_verbatim() -> None:
    new = key_set(TEXT, "node.name", "true")
    assert parse(new).node.name == "true"


def test_set_adds_missing_section_and_script() -> None:
    new = key_set(TEXT, "api.listen", "http://127.0.0.1:9000")
    new = key_set(new, "scripts.main", 'if x then\n  reject("no \\"way\\"")\nend\n')
    config = parse(new)
    assert config.api.listen == "http://127.0.0.1:9000"
    assert config.scripts["main"] == 'if x then\n  reject("no \\"way\\"")\nend\n'
    assert key_get(new, "scripts.main") == config.scripts["main"]


def test_invalid_value_is_refused_with_position() -> None:
    with pytest.raises(ConfigError) as info:
        key_set(TEXT, "queue.workers", "0")
    assert info.value.problems[0].line == 6
    with pytest.raises(InvalidInput):
        key_set(TEXT, "queue.workers", "four")


def test_set_entry_of_defaulted_list_writes_the_list_out() -> None:
    new = key_set("# nothing yet\n", "listeners.inbound.port", "2600")
    assert parse(new).listeners[0].port == 2600 and new.startswith("# nothing yet\n")


def test_config_keys_lists_every_key_by_id() -> None:
    listed = dict(config_keys(TEXT))
    assert listed["listeners.submission.port"] == "2587"
    assert listed["node.name"] == "n1"
    assert listed["cluster.dsn"] == ""
    assert all(key_get(TEXT, k) == v for k, v in listed.items())


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
               max_size=80))
def test_any_script_text_round_trips(source: str) -> None:
    try:
        new = key_set(TEXT, "scripts.s", source)
    except ConfigError:
        # TOML cannot hold some control characters at all; they must be refused, never mangled
        assert any(ord(c) < 32 and c not in "\t\n" or ord(c) == 127 for c in source)
        return
    assert key_get(new, "scripts.s") == source
