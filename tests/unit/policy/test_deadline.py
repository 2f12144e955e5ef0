"""Every run ends: escapes from the instruction hook and CPU bombs stop within a measured bound."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from appliance.policy.sandbox import Deadline, Limits, Sandbox, ScriptError

# A short deadline keeps the suite quick; the bound the issue asks for is "within 1-2 s".
LIMITS = Limits(instructions=2_000_000, memory=16 * 1024 * 1024, seconds=0.5)
BOUND = 2.0
LOOP = "function() while true do end end"

ESCAPES = {
    "xpcall handler that loops": f"xpcall({LOOP}, {LOOP})",
    "xpcall handler that loops, in a pcall loop": f"while true do pcall(xpcall, {LOOP}, {LOOP}) end",
    "xpcall handler that loops, nested xpcalls": f"xpcall(function() xpcall({LOOP}, {LOOP}) end, {LOOP})",
    "xpcall handler in a coroutine": f"coroutine.wrap(function() xpcall({LOOP}, {LOOP}) end)()",
    "xpcall handler in nested coroutines": (
        "local co = coroutine.create(function() coroutine.wrap(function()"
        f" xpcall({LOOP}, {LOOP}) end)() end) coroutine.resume(co) while true do end"),
    "handler of an error raised by the handler": (
        "xpcall(function() error('x') end, function(m) xpcall(" + LOOP + ", " + LOOP + ") end)"),
    "error object whose __tostring loops": (
        f"error(setmetatable({{}}, {{__tostring = {LOOP}}}))"),
    "error object whose __tostring loops, printed by the script": (
        f"local ok, e = pcall(error, setmetatable({{}}, {{__tostring = {LOOP}}})) local s = tostring(e)"),
    "error object whose __tostring loops, in a handler": (
        f"xpcall({LOOP}, function(m) return setmetatable({{}}, {{__tostring = {LOOP}}}) end)"),
    "__gc that loops": f"setmetatable({{}}, {{__gc = {LOOP}}})",
    "__close of a coroutine that died in the hook": (
        "local co = coroutine.create(function() local x <close> = setmetatable({}, {__close = "
        f"{LOOP}}}) while true do end end) coroutine.resume(co) coroutine.close(co)"),
    "__close in the main thread": f"local x <close> = setmetatable({{}}, {{__close = {LOOP}}}) while true do end",
    "coroutine hits the limit, main thread returns at once": (
        "local co = coroutine.create(function() while true do end end) coroutine.resume(co)"),
    "string.rep growth": "local s = 'x' for i = 1, 1e9 do s = string.rep('x', 4 * 1024 * 1024) end",
    "table.concat growth": (
        "local t = {} for i = 1, 64 do t[i] = string.rep('x', 65536) end"
        " for i = 1, 1e9 do local s = table.concat(t) end"),
    "concatenation copies": "local s = string.rep('x', 2 * 1024 * 1024) for i = 1, 1e9 do local t = s .. 'y' end",
    "repeated gsub over 5 MB": "local s = string.rep('a', 5 * 1024 * 1024) for i = 1, 1e6 do s = s:gsub('b', 'c') end",
    "repeated sort of a big table": (
        "local t = {} for i = 1, 200000 do t[i] = i end for i = 1, 1e6 do table.sort(t) end"),
    "%b() over a long subject": "local s = string.rep('(', 200000) return s:find('%b()')",
    "%b() in gsub": "local s = string.rep('(', 200000) return s:gsub('%b()', '')",
}
EXPECTED = ("instruction limit exceeded", "time limit exceeded", "__gc metamethods are not available",
            "pattern too costly", "memory limit exceeded", "an error without a string message")


def _run_bounded(sandbox: Sandbox, name: str, *args: Any) -> tuple[float, Any]:
    """Call in a thread of its own and measure until it has returned (or give up at 10 s)."""
    outcome: list[Any] = []

    def body() -> None:
        try:
            outcome.append(sandbox.call(name, *args))
        except ScriptError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(10)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"{name} still running after 10 s"
    return elapsed, outcome[0]


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escapes_and_bombs_end_within_the_bound(name: str) -> None:
    sandbox = Sandbox(f"function f()\n{ESCAPES[name]}\nend\nfunction ok(x) return x + 1 end\n",
                      name="hostile", limits=LIMITS, functions={})
    elapsed, result = _run_bounded(sandbox, "f")
    assert elapsed < BOUND, f"{name}: {elapsed:.2f} s"
    assert isinstance(result, ScriptError), f"{name} returned {result!r}"
    assert any(text in str(result) for text in EXPECTED), str(result)
    # The runtime is clean afterwards: the next run has its full budget again.
    assert sandbox.call("ok", 41) == 42


def test_the_deadline_counts_each_run_and_moves_by_the_time_spent_in_http() -> None:
    now = [1000.0]
    deadline = Deadline(clock=lambda: now[0])
    sandbox = Sandbox("function f(n) local x = 0 for i = 1, n do x = x + i end return x end",
                      name="t", limits=LIMITS, functions={}, deadline=deadline)
    assert sandbox.call("f", 100_000) == 5_000_050_000
    now[0] += 60  # idle time between runs is not charged to the next run
    assert sandbox.call("f", 100_000) == 5_000_050_000
    deadline.start(Limits(seconds=1.0, http_calls=2, http_seconds=3.0))
    assert deadline.http_window(10.0) == 3.0  # a call's timeout is cut to what the run has left
    now[0] += 2.5
    deadline.http_spent(2.5)  # waiting in http() is charged to the http budget, not the run's
    assert not deadline.expired()
    assert deadline.http_window(10.0) == 0.5
    with pytest.raises(ScriptError, match="too many calls"):
        deadline.http_window(1.0)
    now[0] += 1.1
    assert deadline.expired()


def test_xpcall_and_patterns_still_work_for_honest_scripts() -> None:
    sandbox = Sandbox(
        "function f()\n"
        "  local ok, m = xpcall(function() error('boom', 0) end, function(e) return 'handled ' .. e end)\n"
        "  local ok2, a, b = xpcall(function(x, y) return x + y, 'two' end, print, 1, 2)\n"
        "  local inner = ('call(f(x), g(y)) rest'):match('%b()')\n"
        "  local mt = setmetatable({}, {__index = function(_, k) return k .. '!' end})\n"
        "  return table.concat({tostring(ok), m, tostring(ok2), a, b, inner, mt.hi}, '|')\n"
        "end", name="t", limits=LIMITS, functions={})
    assert sandbox.call("f") == "false|handled boom|true|3|two|(f(x), g(y))|hi!"


def test_a_python_function_a_script_calls_is_inside_the_deadline() -> None:
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.05)

    sandbox = Sandbox("function f() while true do slow() end end", name="t", limits=LIMITS,
                      functions={"slow": slow})
    elapsed, result = _run_bounded(sandbox, "f")
    assert elapsed < BOUND and "time limit exceeded" in str(result)
    assert 5 <= len(calls) <= 20  # about 0.5 s of 0.05 s calls
