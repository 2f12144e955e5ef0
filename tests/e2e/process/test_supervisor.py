"""A node as supervised processes: named children, kill -9 of each under load, drain, SIGHUP."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import threading
import time
from pathlib import Path

from tests.e2e.delivery.sink import Sink
from tests.support.wait import wait_until
from tests.support.node import RunningNode

MSGID = re.compile(rb"\bid ([0-9a-f-]{36})\b")
ROLES = ("appliance api", "appliance housekeeping", "appliance delivery", "appliance smtp 1",
         "appliance smtp 2")
TWO_RECEIVERS = "[smtp]\nprocesses = 2\n"


class Load:
    """`sessions` senders that reconnect after errors until stopped (bounded by `limit`)."""

    def __init__(self, port: int, *, sessions: int = 8, limit: int = 4000) -> None:
        self.port = port
        self.acked: list[str] = []
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.limit = limit
        self.threads = [threading.Thread(target=self._send, args=(i,), daemon=True)
                        for i in range(sessions)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _send(self, index: int) -> None:
        n = 0
        while not self.stop.is_set() and self.count() < self.limit:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                    client.ehlo(f"load{index}.example")
                    while not self.stop.is_set() and self.count() < self.limit:
                        n += 1
                        client.mail(f"s{index}@example.com")
                        client.rcpt(f"r{index}-{n}@example.org")
                        code, reply = client.data(f"Subject: p {index}/{n}\r\n\r\nbody\r\n".encode())
                        if code == 250:
                            with self.lock:
                                self.acked.append(reply.decode().rsplit(" ", 1)[1])
            except (OSError, smtplib.SMTPException):
                with self.lock:
                    self.errors += 1
                time.sleep(0.05)  # a receiver died under us: connect again

    def grow(self, by: int, timeout: float = 60) -> None:
        target = self.count() + by
        wait_until(lambda: self.count() >= target, timeout=timeout)


def delivered(sink: Sink) -> set[str]:
    return {m.group(1).decode() for msg in list(sink.messages)
            for m in [MSGID.search(msg.content)] if m}


def test_children_have_names_in_ps_and_in_the_node_log(tmp_path: Path) -> None:
    with RunningNode(tmp_path, config_text=TWO_RECEIVERS) as node:
        children = node.children()
        assert sorted(children) == sorted(ROLES)
        assert "appliance forkserver" in node.children(forkserver=True)  # what they forked from
        assert (Path("/proc") / str(node.proc.pid) / "cmdline").read_bytes().startswith(  # type: ignore[union-attr]
            b"appliance supervisor")
        ports = json.loads((node.data_dir / "run" / "ports.json").read_text())
        assert ports["children"] == children
        text = (node.data_dir / "log" / "appliance.log").read_text()
        for name in ("smtp-1", "smtp-2", "delivery", "api", "housekeeping"):
            pid = children["appliance " + name.replace("-", " ")]
            assert f" appliance/{name}[{pid}]: " in text


def test_kill_9_of_each_child_in_turn_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with Sink() as sink, RunningNode(tmp_path, config_text=TWO_RECEIVERS,
                                     relay=("127.0.0.1", sink.port)) as node:
        with Load(node.smtp_port) as load:
            load.grow(100)
            for name in ("appliance smtp 1", "appliance delivery", "appliance api",
                         "appliance housekeeping", "appliance smtp 2"):
                old = node.children()[name]
                os.kill(old, signal.SIGKILL)
                wait_until(lambda: node.children().get(name, old) != old, timeout=60)
                load.grow(50)  # the node takes mail again with the new child
            # Without the fork server a child that dies comes back as a new interpreter.
            server = node.children(forkserver=True)["appliance forkserver"]
            os.kill(server, signal.SIGKILL)
            wait_until(lambda: "fork server (pid" in node.output(), timeout=60)
            old = node.children()["appliance smtp 1"]
            os.kill(old, signal.SIGKILL)
            wait_until(lambda: node.children().get("appliance smtp 1", old) != old, timeout=60)
            load.grow(50)
            load.stop.set()
        acknowledged = set(load.acked)
        assert len(acknowledged) >= 400
        wait_until(lambda: acknowledged <= delivered(sink), timeout=180)
        log_text = node.output()
        for name in ("smtp 1", "delivery", "api", "housekeeping", "smtp 2"):
            assert re.search(rf"appliance {name} \(pid \d+\) died \(signal SIGKILL\); restarting", log_text)
        assert "children start as new interpreters" in log_text


def test_sigterm_drains_receivers_then_delivery_then_the_rest(tmp_path: Path) -> None:
    with Sink() as sink:
        node = RunningNode(tmp_path, config_text=TWO_RECEIVERS, relay=("127.0.0.1", sink.port))
        node.start()
        try:
            with Load(node.smtp_port, sessions=8) as load:
                load.grow(100)
                assert node.proc is not None
                pgid = node.proc.pid
                code = node.stop(timeout=120)
            assert code == 0
            try:
                os.killpg(pgid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            assert not alive, "a child outlived the supervisor's drain"
            acknowledged = set(load.acked)
            out = node.output()
            order = [out.index(f"appliance {name} (pid") for name in ("smtp 1", "smtp 2")]
            stops = {name: out.rindex(f"appliance {name} (pid") for name in
                     ("smtp 1", "smtp 2", "delivery", "api", "housekeeping")}
            assert order  # both receivers were started
            assert max(stops["smtp 1"], stops["smtp 2"]) < stops["delivery"] \
                < min(stops["api"], stops["housekeeping"])
            node.start()  # whatever was queued and not yet delivered goes out now
            wait_until(lambda: acknowledged <= delivered(sink), timeout=180)
        finally:
            node.stop()


def test_sighup_imports_the_config_file_and_a_new_listener_is_bound(tmp_path: Path) -> None:
    with RunningNode(tmp_path, config_text=TWO_RECEIVERS) as node:
        assert node.config_path is not None and node.proc is not None
        before = node.children()
        node.config_path.write_text(TWO_RECEIVERS + (
            '[[listeners]]\nid = "inbound"\nport = 2525\n'
            '[[listeners]]\nid = "second"\nport = 0\n'))
        node.proc.send_signal(signal.SIGHUP)
        ports_file = node.data_dir / "run" / "ports.json"

        def second_port() -> int:
            try:
                return int(json.loads(ports_file.read_text())["smtp"].get("second", 0))
            except (OSError, ValueError):
                return 0

        wait_until(lambda: second_port() > 0, timeout=60)
        with smtplib.SMTP("127.0.0.1", second_port(), timeout=30) as client:
            assert client.ehlo()[0] == 250
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as client:
            assert client.noop()[0] == 250  # the first listener kept its socket
        # Rolled onto the new set: the old receiver is gone and a new one has its name (a new
        # child shows the name once it has set its process title).
        now = wait_until(lambda: (lambda c: c if before["appliance smtp 1"] not in c.values()
                                  and "appliance smtp 1" in c else None)(node.children()),
                         timeout=60, what="the receivers rolled")
        assert now["appliance smtp 1"] != before["appliance smtp 1"]
        assert now["appliance delivery"] == before["appliance delivery"]


def test_receivers_wake_delivery_instead_of_its_slow_poll(tmp_path: Path) -> None:
    """With a 60 s poll, mail accepted by either receiver still goes out at once: each commit
    sends a wake-up datagram to the delivery process."""
    config = TWO_RECEIVERS + "[queue]\npoll_interval = 60\n"
    with Sink() as sink, RunningNode(tmp_path, config_text=config,
                                     relay=("127.0.0.1", sink.port)) as node:
        wait_until(lambda: (node.data_dir / "run" / "wake.sock").exists(), timeout=30)
        started = time.monotonic()
        for n in range(6):  # new connections: the kernel spreads them over both receivers
            with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as client:
                assert client.sendmail("a@example.com", [f"b{n}@example.org"],
                                       b"Subject: wake\r\n\r\nx\r\n") == {}
        wait_until(lambda: len(sink.messages) >= 6, timeout=50)
        assert time.monotonic() - started < 60, "delivery waited for its poll"
