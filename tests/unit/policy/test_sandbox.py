"""Sandbox escapes and resource bombs: each stopped with a clear error and the flow's safe default."""

from __future__ import annotations

import logging
import time

import pytest

from appliance.policy.flow import Decision, SessionInfo
from appliance.policy.functions import Functions
from appliance.policy.memory import MemoryCounters
from appliance.policy.sandbox import Limits, Sandbox, ScriptError, ScriptSyntaxError, check_script
from appliance.policy.scripted import ScriptedFlow

SMALL = Limits(instructions=2_000_000, memory=8 * 1024 * 1024)


def _rcpt(body: str, caplog: pytest.LogCaptureFixture) -> tuple[Decision, int, str]:
    """Run `body` as an rcpt_to handler; the verdict and the error line the flow logged."""
    script = f"function rcpt_to(session, rcpt)\n{body}\nreturn accept()\nend\n"
    flow = ScriptedFlow(script, name="hostile", functions=Functions(counters=MemoryCounters()), limits=SMALL)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="appliance.policy.scripted"):
        verdict = flow.rcpt_to(SessionInfo(listener="in", client_ip="192.0.2.1"), "a@example.com")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return verdict.decision, verdict.code, errors[0] if errors else ""


ESCAPES = {
    "os.execute": ('os.execute("touch /tmp/pwned")', "attempt to call a nil value (field 'execute')"),
    "io.open": ('io.open("/etc/passwd")', "attempt to index a nil value (global 'io')"),
    "require": ('require("os")', "attempt to call a nil value (global 'require')"),
    "load": ('load("return 1")()', "attempt to call a nil value (global 'load')"),
    "loadstring": ('loadstring("return 1")()', "global 'loadstring'"),
    "dofile": ('dofile("/etc/passwd")', "global 'dofile'"),
    "loadfile": ('loadfile("/etc/passwd")', "global 'loadfile'"),
    "string.dump": ('local b = string.dump(function() end)', "field 'dump'"),
    "string.dump via method": ('local b = ("x").dump(function() end)', "field 'dump'"),
    "debug": ('debug.sethook()', "global 'debug'"),
    "collectgarbage": ('collectgarbage("stop")', "global 'collectgarbage'"),
    "package.loadlib": ('package.loadlib("libc.so.6", "system")', "global 'package'"),
    "python bridge": ('python.eval("1")', "global 'python'"),
    "_G walk": ('local g = _G.os.execute', "global '_G'"),
    "string metatable": ('getmetatable("").__index.dump = 1', "attempt to index a boolean value"),
    "python function attribute": ('local f = rate.__globals__', "attempt to index a function value"),
    "python objects unreachable": ('error("type of rate is " .. type(rate))', "type of rate is function"),
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_attempts_fail_with_clear_error_and_defer(name: str, caplog: pytest.LogCaptureFixture) -> None:
    code, expected = ESCAPES[name]
    decision, smtp_code, error = _rcpt(code, caplog)
    assert (decision, smtp_code) == (Decision.DEFER, 451)
    assert expected in error
    assert "policy hostile" in error and "rcpt_to failed" in error


BOMBS = {
    "infinite loop": ("while true do end", "instruction limit exceeded"),
    "loop that pcalls the limit away": (
        "while true do pcall(function() while true do end end) end", "instruction limit exceeded"),
    "loop in a coroutine": (
        "coroutine.wrap(function() while true do end end)()", "instruction limit exceeded"),
    "loop in a nested coroutine": (
        "local co = coroutine.create(function() coroutine.wrap(function() while true do end end)() end)"
        " local ok, e = coroutine.resume(co) error(e, 0)", "instruction limit exceeded"),
    "recursion": ("local function f(n) return 1 + f(n + 1) end f(1)", "memory limit exceeded"),
    "table bomb": ("local t = {} for i = 1, 1e9 do t[i] = i end", "memory limit exceeded"),
    "string.rep bomb": ('local s = string.rep("x", 1e9)', "memory limit exceeded"),
    "concat doubling": ('local s = "x" while true do s = s .. s end', "memory limit exceeded"),
    "memory error caught by pcall": (
        'local ok = pcall(string.rep, "x", 1e9) local t = {} for i = 1, 1e9 do t[i] = {} end',
        "memory limit exceeded"),
    "rep of empty strings": ('local s = string.rep("", 1e15)  while true do end', "instruction limit exceeded"),
    "table.move over a huge range": ("table.move({}, 1, 1e15, 2)", "table.move: range too large"),
    "backtracking pattern": ('string.find(string.rep("a", 5000), ".-.-.-b")', "pattern too costly"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_resource_bombs_are_stopped(name: str, caplog: pytest.LogCaptureFixture) -> None:
    code, expected = BOMBS[name]
    started = time.monotonic()
    decision, smtp_code, error = _rcpt(code, caplog)
    assert time.monotonic() - started < 5
    assert (decision, smtp_code) == (Decision.DEFER, 451)
    assert expected in error


def test_runtime_is_usable_after_each_failure() -> None:
    sandbox = Sandbox(
        "function loop() while true do end end\n"
        "function bomb() local t = {} for i = 1, 1e9 do t[i] = i end end\n"
        "function ok(s, x) return x * 2 end\n",
        name="t", limits=SMALL, functions={},
    )
    for name in ("loop", "bomb", "loop", "bomb"):
        with pytest.raises(ScriptError):
            sandbox.call(name, {})
        assert sandbox.call("ok", {}, 21) == 42
    assert sandbox.runtime.get_memory_used() < 2 * 1024 * 1024


def test_globals_set_by_a_run_do_not_leak_into_the_next() -> None:
    sandbox = Sandbox("function f(s) local before = seen; seen = true; return before end",
                      name="t", limits=SMALL, functions={})
    assert sandbox.call("f", {}) is None
    assert sandbox.call("f", {}) is None


def test_bytecode_is_refused_at_compile_time() -> None:
    with pytest.raises(ScriptSyntaxError, match="attempt to load a binary chunk"):
        check_script("\x1bLuaT\x00garbage")


def test_syntax_errors_name_the_line() -> None:
    with pytest.raises(ScriptSyntaxError, match=r"script 'x' does not compile: x:3: .*'end' expected"):
        check_script("function f()\n  local a = 1\n", name="x")


def test_looping_top_level_is_refused_at_compile_time() -> None:
    with pytest.raises(ScriptError, match="instruction limit exceeded"):
        check_script("while true do end")


def test_safe_library_still_works() -> None:
    sandbox = Sandbox(
        "function f(s)\n"
        "  local t = {} for w in ('a b c'):gmatch('%a') do t[#t+1] = w:upper() end\n"
        "  table.sort(t, function(a, b) return a > b end)\n"
        "  return table.concat(t, ',') .. ' ' .. string.format('%05.1f', math.pi) ..\n"
        "    ' ' .. tostring(os.time() > 0) .. ' ' .. utf8.char(233)\n"
        "end\n",
        name="t", limits=SMALL, functions={},
    )
    assert sandbox.call("f", {}) == "C,B,A 003.1 true é"
