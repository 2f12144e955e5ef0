"""One log search over many nodes at once: `searchlog` started on each node through commandRun,
its output polled in one fan-out round per step, split into lines and counted per node.

A search lives in the user's console session; its commands live on the nodes. Stopping ends
every node's command (commandStop); resuming starts them again with `-a` at the time it was
stopped, skipping the lines up to the last one already shown.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from typing import Any

from appliance_client.cluster import Cluster
from appliance_client.errors import NodeFault

from appliance.console.nodes import Member, items

MAX_LINES_PER_POLL = 5000
MAX_TEXT = 200
STAMP = len("2024-05-01T12:00:00.000000+00:00")  # node-log lines start with their time


@dataclasses.dataclass
class NodeRun:
    member: Member
    command: str = ""  # the node's command id while it runs
    buffer: bytes = b""  # a line not finished yet
    count: int = 0  # lines shown so far
    last_stamp: str = ""  # the time prefix of the newest line shown
    at_last_stamp: set[str] = dataclasses.field(default_factory=set)  # lines shown with it
    resuming: bool = False  # drop lines already shown (older, or seen with the same time)
    error: str = ""
    running: bool = False


@dataclasses.dataclass
class Search:
    id: str
    text: str
    follow: bool
    max_lines: int
    after: str
    nodes: dict[str, NodeRun]
    stopped_at: float = 0.0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def argv(self, *, after: str = "") -> list[str]:
        argv = ["searchlog"]
        if after or self.after:
            argv += ["-a", after or self.after]
        if self.follow:
            argv.append("-f")
        if self.max_lines:
            argv += ["-n", str(self.max_lines)]
        return argv + ["--", self.text]

    @property
    def running(self) -> bool:
        return any(n.running for n in self.nodes.values())

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "running": self.running,
                "counts": {k: n.count for k, n in self.nodes.items()},
                "errors": {k: n.error for k, n in self.nodes.items() if n.error},
                "done": {k: not n.running for k, n in self.nodes.items()}}


def new_search(members: list[Member], *, text: str, follow: bool, max_lines: int,
               after: str) -> Search:
    if not text.strip():
        raise ValueError("enter the text to search for")
    if len(text) > MAX_TEXT:
        raise ValueError(f"the search text is limited to {MAX_TEXT} characters")
    return Search(id=secrets.token_urlsafe(12), text=text, follow=follow, max_lines=max_lines,
                  after=after.strip(), nodes={m.label: NodeRun(member=m) for m in members})


def start(client: Cluster, search: Search, *, after: str = "") -> None:
    """Start the search's command on every node that is not running it."""
    argv = {"item": [a.encode() for a in search.argv(after=after)]}
    calls = {}
    for label, run in search.nodes.items():
        if not run.running:
            calls[label] = client.fanout.stage(client.nodes[label], "commandRun", argv=argv)
    client.fanout.dispatch()
    for label, call in calls.items():
        run = search.nodes[label]
        if call.error is not None:
            run.error, run.running = call.error.message, False
        else:
            run.command, run.running, run.error, run.buffer = str(call.result()), True, "", b""


def poll(client: Cluster, search: Search) -> list[tuple[str, str]]:
    """New lines of every running node, in one round: [(node, line), ...]."""
    calls = {label: client.fanout.stage(client.nodes[label], "commandPoll", commandid=run.command)
             for label, run in search.nodes.items() if run.running}
    if not calls:
        return []
    client.fanout.dispatch()
    out: list[tuple[str, str]] = []
    for label, call in calls.items():
        run = search.nodes[label]
        if isinstance(call.error, NodeFault):
            run.running = False  # ended and drained
            if run.buffer:
                out += _lines(run, [run.buffer])
                run.buffer = b""
            continue
        if call.error is not None:
            run.error, run.running = call.error.message, False
            continue
        data = run.buffer + b"".join(bytes(c) for c in items(call.result()))
        *complete, run.buffer = data.split(b"\n")
        out += _lines(run, complete)
    return out[-MAX_LINES_PER_POLL:]


def _lines(run: NodeRun, raw: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for chunk in raw:
        line = chunk.decode("utf-8", "replace").rstrip("\r")
        if not line:
            continue
        stamp = line[:STAMP]
        if run.resuming:
            if stamp < run.last_stamp or (stamp == run.last_stamp and line in run.at_last_stamp):
                continue
            run.resuming = False
        if stamp != run.last_stamp:
            run.last_stamp, run.at_last_stamp = stamp, set()
        if len(run.at_last_stamp) < 10_000:
            run.at_last_stamp.add(line)
        run.count += 1
        out.append((run.member.label, line))
    return out


def stop(client: Cluster, search: Search) -> None:
    for label, run in search.nodes.items():
        if run.running:
            client.fanout.stage(client.nodes[label], "commandStop", commandid=run.command)
    client.fanout.dispatch()
    for run in search.nodes.values():
        run.running = False
    search.stopped_at = time.time()


def resume(client: Cluster, search: Search) -> None:
    """Start again from the time it was stopped, without repeating the lines already shown."""
    after = f"{search.stopped_at - 1:.3f}" if search.stopped_at else ""
    for run in search.nodes.values():
        run.resuming = bool(after)
    start(client, search, after=after)
