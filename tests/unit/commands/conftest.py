"""A runner over the real catalog, and polling a command to its end."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from appliance.commands.base import CommandContext
from appliance.commands.catalog import default_catalog
from appliance.commands.runner import Runner
from appliance.errors import NotFound


class Run:
    """Run commands of the real catalog in-process with a given context."""

    def __init__(self) -> None:
        self.runners: list[Runner] = []

    def runner(self, ctx: CommandContext) -> Runner:
        r = Runner(default_catalog(), ctx)
        self.runners.append(r)
        return r

    def __call__(self, ctx: CommandContext, argv: Sequence[str], *, timeout: float = 10.0) -> str:
        r = self.runner(ctx)
        out, _ = finish(r, "admin", r.run("admin", argv), timeout=timeout)
        return lf(out).decode()


def lf(out: bytes) -> bytes:
    """Command output comes with CRLF line ends (as from a pty): check that, then read it as LF."""
    assert b"\n" not in out.replace(b"\r\n", b""), f"a bare LF in {out[-300:]!r}"
    return out.replace(b"\r\n", b"\n")


def finish(runner: Runner, owner: str, cid: str, *, timeout: float = 10.0) -> tuple[bytes, str]:
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out += b"".join(runner.poll(owner, cid, wait=0.05))
        except NotFound as exc:
            return out, str(exc)
    raise AssertionError(f"command did not end; output so far {out[-300:]!r}")


def poll_until(runner: Runner, owner: str, cid: str, text: bytes, *, timeout: float = 10.0) -> bytes:
    """Poll until `text` appeared in the output (the command keeps running)."""
    out, deadline = b"", time.monotonic() + timeout
    while text not in out:
        assert time.monotonic() < deadline, f"{text!r} did not appear; got {out[-300:]!r}"
        out += b"".join(runner.poll(owner, cid, wait=0.05))
    return out


@pytest.fixture
def run() -> Iterator[Run]:
    r = Run()
    yield r
    for runner in r.runners:
        runner.stop()
