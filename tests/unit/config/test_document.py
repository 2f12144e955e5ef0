"""Config text validation: every problem has the right line, column and a plain explanation."""

from __future__ import annotations

from appliance.config.defaults import DEFAULT_TEXT
from appliance.config.document import ConfigError, Problem, parse, test
from appliance.config.schema import Config

import pytest

NESTED = """\
# a comment
[node]
name = "n1"

[queue]
  workers = 4
  retry_schedule = [60,
      300, "x"]

[[listeners]]
id = "one"
port = 2525

[[listeners]]
id = "two"
port = 70000
"""


def test_default_text_is_the_default_config() -> None:
    assert parse(DEFAULT_TEXT) == Config()
    assert test(DEFAULT_TEXT) == []


def test_array_of_tables_entry_points_at_its_own_line() -> None:
    problems = test(NESTED)
    assert [(p.line, p.column) for p in problems] == [(8, 12), (16, 1)]
    assert problems[1].message.startswith("listeners.1.port:")
    assert "65535" in problems[1].message


def test_indented_nested_key_points_at_its_column() -> None:
    text = "[queue]\n  workers = 0\n"
    assert test(text) == [Problem(2, 3, "queue.workers: Input should be greater than or equal to 1")]


def test_unknown_key_is_explained() -> None:
    (problem,) = test("[node]\nname = 'x'\nnmae = 'y'\n")
    assert (problem.line, problem.column) == (3, 1)
    assert "unknown key" in problem.message and "node.nmae" in problem.message


def test_dotted_key_and_inline_table_are_located() -> None:
    (problem,) = test("node.name = 'a'\nqueue = { workers = 1, lease = 1 }\n")
    assert (problem.line, problem.column) == (2, 24)
    assert problem.message.startswith("queue.lease:")


def test_cross_reference_points_at_the_reference() -> None:
    text = '[[transports]]\nid = "t"\n\n[[listeners]]\nid = "a"\nport = 1\ntransport = "nope"\n'
    (problem,) = test(text)
    assert (problem.line, problem.column) == (7, 1)
    assert "unknown transport 'nope'" in problem.message


def test_duplicate_listener_id_points_at_the_second() -> None:
    text = '[[listeners]]\nid = "a"\nport = 1\n[[listeners]]\nid = "a"\nport = 2\n'
    (problem,) = test(text)
    assert problem.line == 5


def test_syntax_error_has_line_and_column() -> None:
    (problem,) = test("[node]\nname = \"unterminated\n")
    assert problem.line == 2 and problem.message.startswith("TOML syntax:")


def test_parse_raises_with_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse(NESTED)
    assert len(info.value.problems) == 2
    assert "line 16, column 1" in str(info.value)


def test_script_ids_and_references() -> None:
    text = '[[listeners]]\nid = "a"\nport = 1\nscript = "main"\n'
    (problem,) = test(text)
    assert problem.line == 4 and "unknown script 'main'" in problem.message
    assert test(text + '\n[scripts]\nmain = """\nreturn 1\n"""\n') == []
