"""A live node's memory under small compressed requests that would inflate to huge arrays."""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.node import RunningNode

ENV = ('<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/" '
       'xmlns:tns="urn:halon"><soap11env:Body>{}</soap11env:Body></soap11env:Envelope>')
ITEMS = 2_000_000
BOMB = gzip.compress(ENV.format(
    "<tns:userAdd><tns:username>x</tns:username><tns:password>p</tns:password>"
    "<tns:role>custom</tns:role><tns:operations>" + "<tns:item>a</tns:item>" * ITEMS
    + "</tns:operations></tns:userAdd>").encode(), compresslevel=9)
BOUND = 64 << 20  # growth of the peak RSS allowed for all the floods below together


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("memory")) as running:
        done = running.cli("user", "add", "viewer", "--role", "readonly", "--password-stdin",
                           input_text="viewer-pw\n")
        assert done.returncode == 0, done.stderr
        yield running


def peak_rss(node: RunningNode) -> int:
    assert node.proc is not None
    status = Path(f"/proc/{node.proc.pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match
    return int(match.group(1)) * 1024


def send(node: RunningNode, auth: tuple[str, str], action: str) -> requests.Response:
    return requests.post(node.soap_url, data=BOMB, auth=auth, timeout=60, headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": action,
        "Content-Encoding": "gzip"})


def test_array_bombs_cost_no_memory_and_get_a_fault(node: RunningNode) -> None:
    assert len(BOMB) < 150_000  # about the probe's 102 KB
    admin = ("admin", node.admin_password)
    assert send(node, admin, '"login"').status_code == 413  # warm up every path once
    before = peak_rss(node)
    denied = send(node, ("viewer", "viewer-pw"), '"userAdd"')
    assert denied.status_code == 500 and b"access denied" in denied.content
    peeked = send(node, ("viewer", "viewer-pw"), '""')
    assert b"access denied" in peeked.content
    too_big = send(node, admin, '"userAdd"')  # allowed, but past the per-operation cap
    assert too_big.status_code == 413
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(
        send(node, admin, '""').status_code)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [413] * 4
    growth = peak_rss(node) - before
    print(f"peak RSS growth: {growth / (1 << 20):.1f} MiB")
    assert growth < BOUND, f"peak RSS grew by {growth >> 20} MiB"
