"""One policy script compiled in a locked-down Lua 5.4 runtime (lupa), run with bounded CPU and memory."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import lupa.lua54 as lua

from appliance.errors import InvalidInput
from appliance.policy.prelude import BOOTSTRAP, REMOVED_GLOBALS

FLOWS = ("connect", "auth", "mail_from", "rcpt_to", "data", "pre_delivery", "post_delivery")
_MAX_DEPTH = 16


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-run bounds: Lua VM instructions (counted in steps of 1,000), bytes allocated, wall-clock
    seconds (time spent waiting in http() excluded), and http(): calls and their total seconds."""

    instructions: int = 5_000_000
    memory: int = 16 * 1024 * 1024
    seconds: float = 5.0
    http_calls: int = 20
    http_seconds: float = 15.0


class Deadline:
    """One run's clock: the Lua side asks `expired()`; http() asks `http_window()` before a call
    and reports `http_spent()` after it, which moves the deadline (that wait has its own budget)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.start(Limits())

    def start(self, limits: Limits) -> None:
        self.ends = self._clock() + limits.seconds
        self.http_calls_left = limits.http_calls
        self.http_seconds_left = limits.http_seconds

    def expired(self) -> bool:
        return self._clock() > self.ends

    def http_window(self, timeout: float) -> float:
        """The timeout for one more http() call; ScriptError once the run's budget is spent."""
        if self.http_calls_left <= 0:
            raise ScriptError("http(): too many calls in one run")
        if self.http_seconds_left <= 0.05:
            raise ScriptError("http(): the run's total http time is spent")
        self.http_calls_left -= 1
        return min(max(timeout, 0.1), self.http_seconds_left)

    def http_spent(self, seconds: float) -> None:
        self.http_seconds_left -= seconds
        self.ends += seconds


class ScriptError(Exception):
    """A script failed: did not compile, raised, or ran out of instructions or memory."""


class ScriptSyntaxError(ScriptError, InvalidInput):
    """The script text does not compile; the message names the line."""


def _refuse_attribute(obj: object, name: object, is_setting: bool) -> str:
    raise AttributeError("scripts may not access Python attributes")


def to_lua(runtime: Any, value: Any, depth: int = 0) -> Any:
    """Plain Python data -> Lua values: str as UTF-8 bytes, dict/list/tuple as tables."""
    kind = type(value)
    if kind is str:
        return value.encode("utf-8", "surrogateescape")
    if value is None or kind in (bool, int, float, bytes):
        return value
    if depth > _MAX_DEPTH:
        raise ValueError("value nested too deeply for a script")
    if kind is dict or isinstance(value, Mapping):
        return runtime.table_from({to_lua(runtime, k, depth + 1): to_lua(runtime, v, depth + 1)
                                   for k, v in value.items()})
    if kind in (list, tuple):
        return runtime.table_from([to_lua(runtime, v, depth + 1) for v in value])
    raise TypeError(f"cannot hand a {kind.__name__} to a script")


def from_lua(value: Any, depth: int = 0) -> Any:
    """Lua values -> plain Python: strings as str (invalid UTF-8 replaced), tables as dict or list."""
    if depth > _MAX_DEPTH:
        raise ScriptError("table nested too deeply")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if lua.lua_type(value) == "table":
        items = {from_lua(k, depth + 1): from_lua(v, depth + 1) for k, v in value.items()}
        if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
            return [items[i] for i in range(1, len(items) + 1)]
        return items
    raise ScriptError(f"a script may not pass a {lua.lua_type(value) or type(value).__name__} here")


class Sandbox:
    """A runtime holding one compiled script. Not re-entrant: callers hold `lock` around `call`."""

    def __init__(self, text: str, *, name: str, limits: Limits,
                 functions: Mapping[str, Callable[..., Any]], deadline: Deadline | None = None) -> None:
        """`functions["stat"]`, if given, also receives the stat() counts batched in Lua, once
        per run (summed per key), unless `record(True)` asked for every call as it happens.
        `deadline` is the run clock the functions share (http() moves it)."""
        self.name = name
        self.deadline = deadline or Deadline()
        self._stat = functions.get("stat")
        self.limits = limits
        self.lock = threading.Lock()
        self.runtime = lua.LuaRuntime(
            encoding=None, register_eval=False, register_builtins=False,
            unpack_returned_tuples=True, attribute_filter=_refuse_attribute,
            max_memory=limits.memory + 64 * 1024 * 1024,
        )
        self._control = self.runtime.execute(BOOTSTRAP, self.runtime.table_from(
            {k.encode(): _answering(v) for k, v in functions.items()}), self.runtime.table_from(
            {b"expired": self.deadline.expired}))
        self._run, self._unhook, self._reset = self._control.run, self._control.unhook, self._control.reset
        self._record = self._control.record
        lua_globals = self.runtime.globals()
        for global_name in REMOVED_GLOBALS:
            lua_globals[global_name.encode()] = None
        ok, problem = self._control.compile(text.encode("utf-8"), name.encode("utf-8"))
        if not ok:
            raise ScriptSyntaxError(f"script {name!r} does not compile: {from_lua(problem)}")
        self.runtime.gccollect()
        self._base = self.runtime.get_memory_used()
        self.runtime.set_max_memory(self._base + limits.memory)
        self.deadline.start(limits)
        found = self._guard(lambda: self._control.init(limits.instructions))
        self.handlers = frozenset(from_lua(found) or [])

    def call(self, flow: str, *args: Any, session: Any = None, extra_memory: int = 0) -> Any:
        """Run the global function `flow` with plain Python arguments; the global `session` is
        `session`, or else the first argument (flows pass the session table first)."""
        lua_args = [to_lua(self.runtime, a) for a in args]
        lua_session = to_lua(self.runtime, session) if session is not None else (lua_args or [None])[0]
        if extra_memory:
            self.runtime.set_max_memory(self._base + self.limits.memory + extra_memory)
        self.deadline.start(self.limits)
        try:
            result, counted = self._guard(lambda: self._run(
                self.limits.instructions, flow.encode(), lua_session, *lua_args))
        finally:
            if extra_memory:
                self.runtime.set_max_memory(self._base + self.limits.memory)
        self._flush_stats(counted)
        return from_lua(result)

    def record(self, on: bool) -> None:
        self._record(on)

    def _flush_stats(self, counted: Any) -> None:
        if self._stat is None or counted is None:
            return
        for key, n in counted.items():
            k1, k2, k3 = key.split(b"\0")
            self._stat(k1, k2, k3, n)

    def _guard(self, run: Callable[[], Any]) -> Any:
        """Translate Lua failures into ScriptError and leave the runtime clean for the next run."""
        failed = True
        try:
            result = run()
            failed = False  # a run that returns has cleared its own hook (prelude: control.run)
            return result
        except lua.LuaMemoryError as exc:
            raise ScriptError(f"script {self.name!r}: memory limit exceeded ({self.limits.memory} bytes)") from exc
        except lua.LuaError as exc:
            raise ScriptError(f"script {self.name!r}: {_first_line(exc)}") from exc
        except ScriptError as exc:
            raise ScriptError(f"script {self.name!r}: {exc}") from exc
        except Exception as exc:  # a function the script called failed
            raise ScriptError(f"script {self.name!r}: {type(exc).__name__}: {exc}") from exc
        finally:
            if failed:
                self._unhook()
                self._reset()
                # What the run counted before it failed still counts (stat() has no undo).
                self._flush_stats(self._control.take_stats())
            if failed or self.runtime.get_memory_used() > self._base + self.limits.memory // 2:
                self.runtime.gccollect()


def _answering(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` as the prelude calls it: (True, *results) or (False, message), never raising."""
    def answer(*args: Any) -> tuple[Any, ...]:
        try:
            result = fn(*args)
        except ScriptError as exc:
            return False, str(exc).encode("utf-8", "replace")
        except Exception as exc:  # a bug or an edge failing: the script may pcall() it too
            return False, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
        return (True, *result) if isinstance(result, tuple) else (True, result)

    return answer


def _first_line(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text).split("\nstack traceback:")[0].strip()
    for limit in ("instruction limit exceeded", "time limit exceeded"):
        if limit in text:
            return limit
    # Lupa hands over only string errors; a table (even with __tostring) arrives empty and is
    # never converted here, where no hook would bound its metamethods.
    return text or "an error without a string message"


def check_script(text: str, *, name: str = "script") -> None:
    """Compile `text` in a throw-away sandbox; raise ScriptSyntaxError naming the line if it fails.

    Running the top level also catches scripts that fail or loop while defining their handlers.
    """
    Sandbox(text, name=name, limits=Limits(), functions={})
