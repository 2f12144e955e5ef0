"""The console of one node of a three-node cluster, in chromium: the whole cluster at once
(overview, tracking with paging across nodes, a bulk action's per-node count and results, a
followed log search whose badge counts up on the node that gets the mail), and a member that
stops answering is shown as such without hiding the others."""

from __future__ import annotations

import contextlib
import secrets
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
import zeep

from tests.e2e.console.mail import send
from tests.e2e.delivery.sink import Sink
from tests.support.browser import Browser
from tests.support.node import RunningNode
from tests.support.postgres import PostgresServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres
NAMES = ("alpha", "beta", "gamma")
PER_NODE = 3


def _config(tls: Path) -> str:
    return f'''
[api]
tls_cert = "{tls / 'node.pem'}"
tls_key = "{tls / 'node.key'}"

[console]
ca_file = "{tls / 'ca.pem'}"

[queue]
retry_schedule = [3600]
poll_interval = 0.1
'''


def _soap(node: RunningNode, ca: Path) -> Any:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    session.verify = str(ca)
    session.trust_env = False
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session)).service


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            pg_server: PostgresServer) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("console-cluster")
    tls = base / "tls"
    tls.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.cert_chain_pems[0].write_to_path(str(tls / "node.pem"))
    issued.private_key_pem.write_to_path(str(tls / "node.key"))
    for name in NAMES:
        (base / name).mkdir()
    dsn = pg_server.create_database(f"console_cluster_{secrets.token_hex(4)}")
    with Sink() as sink, contextlib.ExitStack() as stack:
        sink.handler.rcpt_replies = {f"defer{i}@dest.example": "451 4.2.0 try later"
                                     for i in range(10)}
        nodes = {name: RunningNode(base / name, scheme="https", config_text=_config(tls),
                                   relay=("127.0.0.1", sink.port), ready_timeout=300) for name in NAMES}
        password = secrets.token_urlsafe(12)
        for node in nodes.values():
            # The console calls every member as the logged-in user: the same admin everywhere.
            node.admin_password = password
            stack.callback(node.stop)
        with ThreadPoolExecutor(len(nodes)) as pool:  # three starts at once
            list(pool.map(RunningNode.start, nodes.values()))
        apis = {name: _soap(node, tls / "ca.pem") for name, node in nodes.items()}
        created = nodes["alpha"].cli("cluster", "create", "--dsn", dsn)
        assert created.returncode == 0, created.stderr
        for name in NAMES[1:]:
            apis[name].clusterJoin(dsn=dsn)
        for name in NAMES:
            apis[name].configKeySet(key="local:node.name", value=name, comment="")
        wait_until(lambda: sorted(str(n.name) for n in apis["alpha"].clusterNodeList() or []
                                  if n.status == "up") == sorted(NAMES),
                   timeout=90, retry=(Exception,), what="three named members up")
        for name, node in nodes.items():
            for i in range(PER_NODE):
                send(node, [f"defer{i}@dest.example"], f"{name} message {i}")
        wait_until(lambda: all(api.mailQueueCount(filter="queue=DEFER") == PER_NODE
                               for api in apis.values()), timeout=120, retry=(Exception,),
                   what="mail deferred on every node")
        yield {"nodes": nodes, "apis": apis}


@pytest.fixture(scope="module")
def console(cluster: dict[str, Any], browser: Browser) -> Browser:
    alpha = cluster["nodes"]["alpha"]
    browser.login(alpha.console_url, "admin", alpha.admin_password)
    return browser


def _base(cluster: dict[str, Any]) -> str:
    return str(cluster["nodes"]["alpha"].console_url)


def test_overview_and_cluster_page_show_every_member(console: Browser, cluster: dict[str, Any]) -> None:
    console.open(_base(cluster), "/?node=")
    try:
        cards = console.wait(lambda: len(console.all(".node-card .node-up")) == 3
                             and console.all(".node-card"), timeout=60, what="three answering nodes")
    except TimeoutError as exc:
        raise AssertionError(console.css("main").text) from exc
    assert sorted(c.get_attribute("data-node") for c in cards) == sorted(NAMES)
    for card in cards:
        assert card.find_element("css selector", "[data-state=DEFER]").text == str(PER_NODE)
    options = [o.get_attribute("value") for o in console.all("#node-select option")]
    assert options == ["", *sorted(NAMES)] or sorted(options[1:]) == sorted(NAMES)
    console.open(_base(cluster), "/cluster")
    answers = console.wait(lambda: console.all("table.members td.answers .ok"), what="members")
    assert len(answers) == 3


def test_tracking_pages_across_nodes_and_a_bulk_action_counts_per_node(
        console: Browser, cluster: dict[str, Any]) -> None:
    console.open(_base(cluster), "/tracking?node=&show=queue&size=2")
    assert console.wait_css("#total").text == str(3 * PER_NODE)
    seen = []
    while True:
        seen += [(r.get_attribute("data-node"), r.get_attribute("data-id"))
                 for r in console.all("table.rows tr.row")]
        nxt = console.all("nav.pager a.next")
        if not nxt:
            break
        nxt[0].click()
        console.wait(lambda: "page=" in console.driver.current_url, what="the next page")
    assert len(seen) == 3 * PER_NODE and len(set(seen)) == len(seen)
    assert {node for node, _ in seen} == set(NAMES)
    # Hold every match of one recipient: first the count on each node, then each node's result.
    console.open(_base(cluster), "/tracking?node=&show=queue&recipient=defer1%40")
    console.css("input[name=scope][value=all]").click()
    console.css("button[data-action=hold]").click()
    assert console.wait_css("#confirm-count").text == "3"
    assert console.css("#confirm-nodes").text == "3"
    console.css("#confirm-action").click()
    done = console.wait(lambda: console.all(".results-table tr[data-node] td.done"), what="results")
    assert [d.text for d in done] == ["1", "1", "1"]
    for api in cluster["apis"].values():
        assert api.mailQueueCount(filter="queue=HOLD and to~defer1@") == 1


def test_followed_log_search_counts_up_on_the_receiving_node(console: Browser,
                                                             cluster: dict[str, Any]) -> None:
    token = f"follow{secrets.token_hex(4)}"
    console.open(_base(cluster), "/logsearch?node=")
    console.wait_css("#logsearch-form input[name=text]").send_keys(token)
    console.css("#start").click()
    console.wait(lambda: console.css("#status").text.startswith("following"), what="following")

    def count(name: str) -> int:
        return int(console.css(f'#badges .badge[data-node="{name}"] .count').text)

    assert [count(n) for n in NAMES] == [0, 0, 0]
    send(cluster["nodes"]["beta"], [f"{token}@dest.example"], "followed")
    console.wait(lambda: count("beta") > 0, what="beta's badge to count up")
    assert count("alpha") == 0 and count("gamma") == 0
    assert token in console.css("#log-view .lines").text
    console.css("#stop").click()
    console.wait(lambda: console.css("#status").text == "stopped", what="stopped")
    seen = count("beta")
    send(cluster["nodes"]["gamma"], [f"{token}@dest.example"], "while stopped")
    console.css("#resume").click()
    console.wait(lambda: count("gamma") > 0, what="the resumed search to find gamma's line")
    assert count("beta") == seen  # nothing shown twice
    console.css("#stop").click()


def test_a_member_that_stops_answering_is_shown_as_such(console: Browser,
                                                        cluster: dict[str, Any]) -> None:
    cluster["nodes"]["gamma"].kill()
    console.open(_base(cluster), "/?node=")
    down = console.wait_css('.node-card[data-node="gamma"] .node-down', timeout=60)
    assert "not answering" in down.text
    assert len(console.all(".node-card .node-up")) == 2
    console.open(_base(cluster), "/tracking?node=&show=queue")
    assert "gamma" in console.wait_css(".node-errors").text
    assert {r.get_attribute("data-node") for r in console.all("table.rows tr.row")} == {"alpha", "beta"}
