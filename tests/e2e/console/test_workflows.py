"""Queue workflows in chromium against a live node: entries restored from the Trash page, a
suspension set and removed, a drain followed and cancelled, the inspector's timeline and
"why is it waiting", the alerts' state, hostile strings shown as text, and a readonly user."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.console.conftest import admin_soap, full_page_shot
from tests.e2e.console.mail import CONFIG, HOSTILE_REPLY, send
from tests.e2e.delivery.sink import Sink
from tests.support.browser import Browser
from tests.support.node import RunningNode
from tests.support.wait import wait_until

TRASHED = [f"trash{i}@dest.example" for i in range(3)]
DRAINED = [f"drain{i}@dest.example" for i in range(30)]
HOSTILE_FILTER = 'to~%@held.example or subject~"<img src=x onerror=window.__pwned=1>"'
HOSTILE_REASON = '<script>window.__pwned="reason"</script> dst is down'
VIEWER = ("viewer", "viewer-password-1")


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with Sink() as running:
        running.handler.rcpt_replies = {a: "451 4.2.0 try later" for a in TRASHED + DRAINED}
        running.handler.rcpt_replies["stuck@dest.example"] = HOSTILE_REPLY
        yield running


@pytest.fixture(scope="module")
def console_node(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[RunningNode]:
    node = RunningNode(tmp_path_factory.mktemp("workflows"), scheme="https",
                       config_text=CONFIG + "\n[alerts]\ninterval = 0.3\n",
                       relay=("127.0.0.1", sink.port), ready_timeout=300)
    with node:
        send(node, TRASHED, "to be trashed")
        send(node, DRAINED, "to be drained")
        send(node, ["stuck@dest.example"], "stuck at the next hop")
        soap = admin_soap(node)
        wait_until(lambda: soap.mailQueueCount(filter="queue=DEFER") == len(TRASHED + DRAINED) + 1,
                   timeout=120, retry=(Exception,), what="the node to defer its mail")
        soap.alertAdd(name="deferred-pile", filter="queue=DEFER", threshold=5, minutes=0)
        node.add_user(VIEWER[0], "readonly", VIEWER[1])
        yield node


def _not_pwned(b: Browser) -> None:
    assert b.script("return window.__pwned === undefined") is True
    assert b.script("return document.querySelectorAll('td img, td script, pre *').length") == 0


def _count(page: Any) -> int:
    return int(page.totalhits)


def test_trashed_entries_restored_from_the_trash_page(admin_browser: Browser,
                                                      console_node: RunningNode) -> None:
    b, soap = admin_browser, admin_soap(console_node)
    before = {e.msgto: (e.id, e.msgqueue, e.msgretries) for e in
              soap.mailQueue(filter="to~trash", offset=0, limit=10).result.item}
    assert soap.mailQueueDeleteBulk(filter="to~trash") == 3
    b.open(console_node.console_url, "/trash?filter=to~trash")
    assert b.wait_css("#total").text == "3"
    boxes = b.all("input.sel")
    for box in boxes[:2]:
        box.click()
    b.css("button[data-action=restore]").click()
    assert b.wait_css("#confirm-count").text == "2" and b.css("#confirm-nodes").text == "1"
    full_page_shot(b, "trash")
    trash = lambda: _count(soap.mailTrash(filter="to~trash", offset=0, limit=1,  # noqa: E731
                                          options={"totalhits": True}))
    assert trash() == 3  # the count came from a preview: nothing restored yet
    b.css("#confirm-action").click()
    assert b.wait_css(".results-table td.done").text == "2"
    assert trash() == 1
    # The rest as "all matches" of the page's filter: the count first again.
    b.open(console_node.console_url, "/trash?filter=to~trash")
    b.css("input[name=scope][value=all]").click()
    b.css("button[data-action=restore]").click()
    assert b.wait_css("#confirm-count").text == "1"
    b.css("#confirm-action").click()
    assert b.wait_css(".results-table td.done").text == "1"
    b.open(console_node.console_url, "/tracking?show=queue&recipient=trash")
    shown = [r.find_elements("css selector", "td.mono")[2].text for r in b.all("table.rows tr.row")]
    assert sorted(shown) == sorted(TRASHED)  # received, from, to
    after = {e.msgto: (e.id, e.msgqueue, e.msgretries) for e in
             soap.mailQueue(filter="to~trash", offset=0, limit=10).result.item}
    assert after == before  # back exactly as they were


def test_suspension_set_and_removed_from_the_page(admin_browser: Browser, console_node: RunningNode,
                                                  sink: Sink) -> None:
    b, soap = admin_browser, admin_soap(console_node)
    b.open(console_node.console_url, "/suspensions")
    form = b.wait_css("#suspend-form")
    form.find_element("css selector", "input[name=filter]").send_keys(HOSTILE_FILTER)
    form.find_element("css selector", "input[name=reason]").send_keys(HOSTILE_REASON)
    b.css("#suspend").click()
    row = b.wait_css("#suspensions tr.row[data-state=active]")
    sid = row.get_attribute("data-id")
    assert row.find_element("css selector", "td.filter").text == HOSTILE_FILTER
    assert row.find_element("css selector", "td.reason").text == HOSTILE_REASON
    _not_pwned(b)
    send(console_node, ["someone@held.example"], "held by the suspension")

    def held() -> bool:
        b.open(console_node.console_url, "/suspensions")
        return b.css(f'#suspensions tr.row[data-id="{sid}"] td.held').text == "1"

    b.wait(held, what="the suspension holding the new mail")
    assert b.css(f'#suspensions tr.row[data-id="{sid}"] .badge[data-node="node1"]').text == "node1: 1"
    assert not any("someone@held.example" in m.rcpt_tos for m in sink.messages)
    full_page_shot(b, "suspensions")
    b.css(f'#suspensions tr.row[data-id="{sid}"] form.remove button').click()
    assert b.wait_css("#suspension-result td.done").text == "1"  # entries released
    assert not b.all(f'#suspensions tr.row[data-id="{sid}"]')
    assert [s.state for s in soap.mailQueueSuspendList(ended=True) if s.id == sid] == ["removed"]
    wait_until(lambda: any("someone@held.example" in m.rcpt_tos for m in sink.messages),
               what="the released mail delivered")


def test_drain_shows_its_progress_and_is_cancelled(admin_browser: Browser,
                                                   console_node: RunningNode) -> None:
    b, soap = admin_browser, admin_soap(console_node)
    b.open(console_node.console_url, "/jobs")
    form = b.wait_css("#drain-form")
    form.find_element("css selector", "input[name=filter]").send_keys("to~drain")
    form.find_element("css selector", "select[name=action] option[value=delete]").click()
    jobs_before = len(soap.mailQueueJobList() or [])
    b.css("#drain").click()
    # First how many entries it would take, nothing started yet.
    assert int(b.wait_css("#confirm-count").text) == len(DRAINED)
    assert len(soap.mailQueueJobList() or []) == jobs_before
    b.css("#confirm-drain").click()
    job = b.wait_css("#job-result td.done").text
    row = f'#jobs tr.row[data-id="{job}"]'

    def moving() -> bool:
        done, left = int(b.css(row + " td.done").text), int(b.css(row + " td.remaining").text)
        return 0 < done and left > 0 and done + left == len(DRAINED)

    b.wait(moving, what="the drain's progress to show", timeout=60)
    assert b.css(row).get_attribute("data-state") == "RUNNING"
    assert b.css(row + " td.eta").text.endswith("s")
    full_page_shot(b, "jobs")
    b.css(row + " form.cancel-job button").click()
    b.wait(lambda: b.css(row).get_attribute("data-state") == "CANCELLED", what="the cancel")
    left = soap.mailQueueCount(filter="to~drain")
    assert 0 < left < len(DRAINED)
    [listed] = [j for j in soap.mailQueueJobList() if str(j.id) == job]
    assert listed.state == "CANCELLED" and listed.done == len(DRAINED) - left


def test_inspector_shows_timeline_and_why_it_waits(admin_browser: Browser,
                                                   console_node: RunningNode) -> None:
    b = admin_browser
    b.open(console_node.console_url, "/tracking?show=queue&recipient=stuck")
    b.wait_css("table.rows tr.row a.inspect").click()
    assert b.wait_css("#explain [data-field=waitson]").text == "retry"
    summary = b.css("pre.explain-summary").text
    assert "DEFER" in summary and "4.2.0" in summary
    kinds = [e.get_attribute("data-kind") for e in b.all("#timeline tr.event")]
    assert kinds[:2] == ["received", "queued"] and "deferred" in kinds
    assert HOSTILE_REPLY in b.css("#timeline").text  # the remote reply, as text
    _not_pwned(b)
    full_page_shot(b, "inspector-timeline")


def test_alerts_page_shows_the_state(admin_browser: Browser, console_node: RunningNode) -> None:
    b = admin_browser

    def firing() -> bool:
        b.open(console_node.console_url, "/alerts")
        return b.css('#alerts tr.row[data-name="deferred-pile"]').get_attribute("data-state") == "firing"

    b.wait(firing, what="the alert to fire")
    assert b.css("#firing").text == "1 firing"
    full_page_shot(b, "alerts")
    # Every page of this module ran under the CSP without a violation (no inline script).
    assert not [m for m in b.console_errors() if "Content Security Policy" in m]


def test_readonly_user_sees_no_mutating_control_and_is_refused_by_hand(
        browser: Browser, console_node: RunningNode) -> None:
    b, soap = browser, admin_soap(console_node)
    b.driver.delete_all_cookies()
    b.login(console_node.console_url, *VIEWER)
    b.open(console_node.console_url, "/trash")
    assert int(b.wait_css("#total").text) > 0  # the drain's deletions
    assert {a.get_attribute("data-nav") for a in b.all("nav.pages a")} >= {
        "trash", "suspensions", "jobs", "alerts"}
    assert not b.all("input.sel") and not b.all("button[data-action]")
    b.open(console_node.console_url, "/suspensions")
    assert b.wait_css("#suspensions") and not b.all("#suspend-form") and not b.all("form.remove")
    b.open(console_node.console_url, "/jobs")
    assert b.wait_css("#jobs tr.row") and not b.all("#drain-form") and not b.all("form.cancel-job")
    http = console_node.console_session(*VIEWER)
    page = http.get(console_node.console_url + "/jobs", timeout=30).text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert token
    trashed = _count(soap.mailTrash(filter="", offset=0, limit=1, options={"totalhits": True}))
    sid = soap.mailQueueSuspend(filter="to~%@ro.example", ttl=600, reason="kept")
    posts = {"/trash/act": {"op": "restore", "scope": "all", "confirm": "1"},
             "/suspensions/add": {"filter": "to~%@x.example", "ttl": "1h"},
             "/suspensions/remove": {"id": sid},
             "/jobs/start": {"filter": "to~stuck", "action": "delete", "per_minute": "60"},
             "/jobs/cancel": {"on": "node1", "id": "1"}}
    for path, data in posts.items():
        refused = http.post(console_node.console_url + path, data={"csrf": token.group(1), **data},
                            timeout=30)
        assert refused.status_code == 403, path
    assert _count(soap.mailTrash(filter="", offset=0, limit=1,
                                 options={"totalhits": True})) == trashed
    assert [s.id for s in soap.mailQueueSuspendList()] == [sid]
    assert soap.mailQueueCount(filter="to~stuck") == 1
