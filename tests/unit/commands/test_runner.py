"""The runner: ids at once, polling until the end, input, signals, limits, owners and reaping."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from appliance.commands.base import ArgvParser, CommandContext, CommandSpec, Terminal
from appliance.commands.catalog import Catalog
from appliance.commands.runner import Limits, Runner
from appliance.errors import Conflict, InvalidInput, NotFound


def _words(argv: Sequence[str]) -> list[str]:
    return list(argv)


def _echo(ctx: CommandContext, args: list[str], term: Terminal) -> None:
    term.write(" ".join(args) + "\n")


def _cat(ctx: CommandContext, args: list[str], term: Terminal) -> None:
    """Echo input back upper-cased until a line `end`."""
    while True:
        data = term.read(0.05)
        if data is None:
            continue
        if data.strip() == b"end":
            return
        term.write(data.upper())


def _flood(ctx: CommandContext, args: list[str], term: Terminal) -> None:
    while True:
        term.write(b"x" * 1000)


def _hang(ctx: CommandContext, args: list[str], term: Terminal) -> None:
    term.write("waiting\n")
    while True:
        term.sleep(10)


def _boom(ctx: CommandContext, args: list[str], term: Terminal) -> None:
    term.write("about to fail\n")
    raise RuntimeError("a bug")


def _strict(argv: Sequence[str]) -> str:
    p = ArgvParser("strict")
    p.add_argument("-n", type=int, required=True)
    return str(p.parse_argv(argv).n)


CATALOG = Catalog(
    CommandSpec(name=n, usage=n, description=n, parse=_strict if n == "strict" else _words, run=f)
    for n, f in [("echo", _echo), ("cat", _cat), ("flood", _flood), ("hang", _hang),
                 ("boom", _boom), ("strict", _echo)]
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    r = Runner(CATALOG, CommandContext(log_dir=tmp_path), limits=Limits(max_output=10_000, max_per_owner=3))
    yield r
    r.stop()


def drain(runner: Runner, owner: str, cid: str, *, timeout: float = 5.0) -> tuple[bytes, str]:
    """Poll until the end-fault; return the output and the fault's text."""
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out += b"".join(runner.poll(owner, cid, wait=0.05))
        except NotFound as exc:
            return out, str(exc)
    raise AssertionError(f"command did not end; output so far {out[:200]!r}")


def test_run_returns_at_once_and_poll_ends_with_not_found(runner: Runner) -> None:
    cid = runner.run("alice", ["echo", "hello", "world"])
    out, fault = drain(runner, "alice", cid)
    assert out == b"hello world\r\n"
    assert "has ended (exit 0)" in fault
    with pytest.raises(NotFound, match="no command"):
        runner.poll("alice", cid)


def test_unknown_command_and_bad_argv_fault_before_starting(runner: Runner) -> None:
    with pytest.raises(NotFound, match="unknown command 'sh'"):
        runner.run("alice", ["sh", "-c", "id"])
    with pytest.raises(InvalidInput, match="strict: .*-n"):
        runner.run("alice", ["strict"])
    with pytest.raises(InvalidInput, match="strict: .*invalid int"):
        runner.run("alice", ["strict", "-n", "x"])
    with pytest.raises(InvalidInput, match="empty"):
        runner.run("alice", [])
    with pytest.raises(InvalidInput, match="NUL"):
        runner.run("alice", ["echo", "a\x00b"])
    assert runner.running() == 0


def test_another_users_command_is_not_found(runner: Runner) -> None:
    cid = runner.run("alice", ["hang"])
    for call in (lambda: runner.poll("bob", cid), lambda: runner.push("bob", cid, b"x"),
                 lambda: runner.end("bob", cid), lambda: runner.signal("bob", cid, "interrupt"),
                 lambda: runner.termsize("bob", cid, 100, 40)):
        with pytest.raises(NotFound, match="no command"):
            call()
    runner.end("alice", cid)
    out, fault = drain(runner, "alice", cid)
    assert out == b"waiting\r\n" and "stopped" in fault


def test_push_reaches_the_commands_input(runner: Runner) -> None:
    cid = runner.run("alice", ["cat"])
    runner.push("alice", cid, b"abc\n")
    runner.push("alice", cid, b"end\n")
    out, fault = drain(runner, "alice", cid)
    assert out == b"ABC\r\n" and "exit 0" in fault


def test_interrupt_by_signal_or_by_pushing_ctrl_c(runner: Runner) -> None:
    first = runner.run("alice", ["hang"])
    second = runner.run("alice", ["cat"])
    runner.signal("alice", first, "interrupt")
    runner.push("alice", second, b"\x03")
    assert "interrupted" in drain(runner, "alice", first)[1]
    assert "interrupted" in drain(runner, "alice", second)[1]
    with pytest.raises(InvalidInput, match="unknown signal"):
        runner.signal("alice", runner.run("alice", ["hang"]), "SIGFOO")


def test_over_long_output_is_cut_with_a_marker_and_ends(runner: Runner) -> None:
    cid = runner.run("alice", ["flood"])
    out, fault = drain(runner, "alice", cid)
    assert out.startswith(b"x" * 10_000)
    assert out[10_000:] == b"\r\n[output cut at 10000 bytes; command ended]\r\n"
    assert "output limit" in fault


def test_poll_coalesces_output_into_bounded_chunks(tmp_path: Path) -> None:
    r = Runner(CATALOG, CommandContext(log_dir=tmp_path), limits=Limits(max_output=300_000, chunk=64_000))
    cid = r.run("alice", ["flood"])
    chunks: list[bytes] = []
    while True:
        try:
            chunks += r.poll("alice", cid, wait=0.05)
        except NotFound:
            break
    assert max(map(len, chunks)) <= 64_000
    assert sum(map(len, chunks)) > 300_000


def test_a_failing_command_reports_and_ends(runner: Runner) -> None:
    out, fault = drain(runner, "alice", runner.run("alice", ["boom"]))
    assert out == b"about to fail\r\nboom: internal error (see the node's log)\r\n"
    assert "exit 1" in fault


def test_commands_run_concurrently_and_per_owner_limit(runner: Runner) -> None:
    ids = [runner.run("alice", ["hang"]) for _ in range(3)]
    with pytest.raises(Conflict, match="too many commands for alice"):
        runner.run("alice", ["hang"])
    other = runner.run("bob", ["echo", "still", "served"])
    assert drain(runner, "bob", other)[0] == b"still served\r\n"
    assert runner.running() == 3
    runner.end("alice", ids[0])
    with pytest.raises(Conflict, match="too many commands for alice"):
        runner.run("alice", ["echo"])  # ended, but its output was not read yet
    drain(runner, "alice", ids[0])
    assert drain(runner, "alice", runner.run("alice", ["echo", "again"]))[0] == b"again\r\n"
    for cid in ids[1:]:
        runner.end("alice", cid)
        drain(runner, "alice", cid)


def test_time_limit_and_reaping_of_abandoned_commands(tmp_path: Path) -> None:
    clock = Clock()
    r = Runner(CATALOG, CommandContext(log_dir=tmp_path),
               limits=Limits(max_runtime=60, idle_timeout=30), monotonic=clock)
    slow = r.run("alice", ["hang"])
    abandoned = r.run("alice", ["hang"])
    for step in range(7):
        clock.now += 10
        r.poll("alice", slow)
        r.reap()
    out, fault = drain(r, "alice", slow)
    assert out.endswith(b"[command ended: ran longer than 60 s]\r\n") and "time limit" in fault
    with pytest.raises(NotFound, match="no command"):
        r.poll("alice", abandoned)
    r.stop()
    assert r.running() == 0


def test_termsize_is_checked_and_kept(runner: Runner) -> None:
    cid = runner.run("alice", ["hang"], cols=100, rows=30)
    runner.termsize("alice", cid, 132, 50)
    with pytest.raises(InvalidInput, match="out of range"):
        runner.termsize("alice", cid, 0, 50)
    with pytest.raises(InvalidInput, match="out of range"):
        runner.run("alice", ["echo"], cols=-1)
    runner.end("alice", cid)


def test_stop_ends_every_command(tmp_path: Path) -> None:
    r = Runner(CATALOG, CommandContext(log_dir=tmp_path))
    r.start()
    for _ in range(3):
        r.run("alice", ["hang"])
    before = threading.active_count()
    r.stop(timeout=2)
    assert r.running() == 0
    assert threading.active_count() <= before - 3
