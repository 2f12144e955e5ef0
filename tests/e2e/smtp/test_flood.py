"""A live node under a bounded connection flood: 2,000 idle SMTP connections from 40 addresses
and 40 slowloris HTTP connections. Well-behaved clients are still served within 1 s, the node's
descriptor count stays bounded, and the log gains a line per condition, not per connection."""

from __future__ import annotations

import os
import resource
import smtplib
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from tests.e2e.delivery.sink import Sink
from tests.support.node import RunningNode

SMTP_FLOOD = 2_000  # half from one address (as the probe), half from 20 (50 each: the cap)
SLOWLORIS = 40
ONE_RECEIVER = "[smtp]\nprocesses = 1\n"
LOGIN = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:halon">'
         '<e:Body><t:login/></e:Body></e:Envelope>')


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SMTP_FLOOD + SLOWLORIS + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    # One receiver: the caps are exact per process; with several receivers each holds its
    # share, and the kernel does not spread one address's connections evenly over them.
    with Sink() as sink, RunningNode(tmp_path_factory.mktemp("flood"), config_text=ONE_RECEIVER,
                                     relay=("127.0.0.1", sink.port)) as running:
        yield running


def descriptors(node: RunningNode) -> int:
    assert node.proc is not None  # the supervisor and every child process of the node
    return sum(len(os.listdir(f"/proc/{pid}/fd"))
               for pid in [node.proc.pid, *node.children().values()])


def resident(node: RunningNode) -> int:
    """Resident memory of the supervisor and every child, in bytes."""
    assert node.proc is not None
    total = 0
    for pid in [node.proc.pid, *node.children().values()]:
        with open(f"/proc/{pid}/status") as status:
            total += next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    return total


def flood(port: int, count: int, sources: int, first: int) -> list[socket.socket]:
    opened = []
    for i in range(count):
        sock = socket.socket()
        sock.settimeout(5)
        sock.bind((f"127.0.1.{first + i % sources}", 0))
        sock.connect(("127.0.0.1", port))
        opened.append(sock)
    return opened


def timed_mail(node: RunningNode) -> float:
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=10) as client:
        client.ehlo("good.example")
        refused = client.sendmail("a@good.example", ["b@dest.example"],
                                  b"Subject: served\r\n\r\nstill served\r\n")
        assert refused == {}
    return time.monotonic() - started


def timed_api(node: RunningNode) -> float:
    started = time.monotonic()
    response = requests.post(node.soap_url, data=LOGIN, auth=("admin", node.admin_password),
                             headers={"Content-Type": "text/xml", "SOAPAction": '"login"'},
                             timeout=10)
    assert response.status_code == 200 and b">true<" in response.content
    return time.monotonic() - started


def test_flood_leaves_good_clients_served_and_descriptors_bounded(node: RunningNode) -> None:
    timed_mail(node)
    timed_api(node)
    baseline = descriptors(node)
    memory = resident(node)
    smtp = flood(node.smtp_port, SMTP_FLOOD // 2, 1, 1)
    slow: list[socket.socket] = []
    try:
        assert smtp[49].recv(100).startswith(b"220 ")
        for sock in smtp[50:55] + smtp[-5:]:  # past the per-address cap: refused at once
            assert sock.recv(100).startswith(b"421 4.7.0 ")
        smtp += flood(node.smtp_port, SMTP_FLOOD // 2, 20, 2)  # reaches the node's total
        slow = flood(node.soap_port, SLOWLORIS, 1, 100)
        for sock in slow:
            try:
                sock.sendall(b"POST /remote/ HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            except OSError:
                pass  # already refused (503) and closed
        mail, api = timed_mail(node), timed_api(node)
        held = descriptors(node) - baseline
        print(f"during the flood: mail {mail * 1000:.0f} ms, API call {api * 1000:.0f} ms, "
              f"node descriptors {baseline} before, +{held}")
        assert mail < 1.0 and api < 1.0
        assert held <= 1000 + 16 + 50  # SMTP total + API per-address cap + slack
        # At most the per-address cap of them holds a connection (and a worker); the rest
        # were refused with 503 or, while idle, closed to make room for newer ones.
        assert sum(_closed_by_node(s) for s in slow) >= SLOWLORIS - 16
    finally:
        for sock in smtp + slow:
            sock.close()
    timed_mail(node)  # served after the flood too
    grown = resident(node) - memory
    print(f"resident memory of the node: {memory >> 20} MiB before the flood, {grown >> 20:+} MiB after")
    assert grown < 64 << 20  # the flood's sessions are gone, and so is what they held
    lines = [line for line in node.output().splitlines() if "refusing more" in line]
    assert 1 <= len(lines) <= 5, lines
    assert "Traceback" not in node.output()


def _closed_by_node(sock: socket.socket) -> bool:
    sock.settimeout(0.2)
    try:
        data = sock.recv(100)
    except ConnectionResetError:
        return True
    except OSError:
        return False  # still open: held until the header deadline
    return data == b"" or data.startswith(b"HTTP/1.1 503")
