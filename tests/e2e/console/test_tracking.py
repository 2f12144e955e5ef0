"""Mail tracking in chromium against a live node: search, page, select and bounce, inspect,
saved filters and deep links, hostile content shown as text, and a readonly user."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests
import zeep

from tests.e2e.console.mail import CONFIG, HOSTILE_HEADER, HOSTILE_REPLY, HOSTILE_SUBJECT, send
from tests.e2e.delivery.sink import Sink
from tests.support.browser import Browser
from tests.support.node import RunningNode
from tests.support.wait import wait_until

DELIVERED = 6
DEFERRED = 5


@pytest.fixture(scope="module")
def console_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with Sink() as sink:
        sink.handler.rcpt_replies = {f"defer{i}@dest.example": "451 4.2.0 try later"
                                     for i in range(19)}
        sink.handler.rcpt_replies["defer19@dest.example"] = HOSTILE_REPLY
        node = RunningNode(tmp_path_factory.mktemp("tracking"), scheme="https",
                           config_text=CONFIG, relay=("127.0.0.1", sink.port), ready_timeout=300)
        with node:
            for i in range(DELIVERED):
                send(node, [f"ok{i}@dest.example"], f"delivered number {i}")
            for i in range(DEFERRED):
                send(node, [f"defer{i}@dest.example"], f"deferred number {i}")
            send(node, ["quarantine@dest.example"], "held by the policy")
            send(node, ["defer19@dest.example"], HOSTILE_SUBJECT, headers={"X-Evil": HOSTILE_HEADER},
                 body=f"click {HOSTILE_HEADER}\n<script>window.__pwned='body'</script>\n")
            soap = _soap(node)
            wait_until(lambda: soap.service.mailHistory(filter="action=DELIVER", offset=0, limit=1,
                                                        options={"totalhits": True}).totalhits == DELIVERED
                       and soap.service.mailQueueCount(filter="queue=DEFER") == DEFERRED + 1,
                       timeout=120, retry=(Exception,), what="the node to deliver and defer its mail")
            node.add_user("viewer", "readonly", "viewer-password-1")
            yield node


def _soap(node: RunningNode) -> zeep.Client:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    session.verify = str(node.cert_path)
    session.trust_env = False
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))


def _rows(browser: Browser) -> list[tuple[str, str, str]]:
    return [(r.get_attribute("data-node"), r.get_attribute("data-source"), r.get_attribute("data-id"))
            for r in browser.all("table.rows tr.row")]


def _not_pwned(browser: Browser) -> None:
    assert browser.script("return window.__pwned === undefined") is True
    assert browser.script("return document.querySelectorAll('td.subject *, pre *').length") == 0


def test_list_pages_through_everything_once(admin_browser: Browser, console_node: RunningNode) -> None:
    b = admin_browser
    b.open(console_node.console_url, "/tracking?size=10")
    total = int(b.wait_css("#total").text)
    assert total == DELIVERED + DEFERRED + 2 + DEFERRED + 1  # + the DEFER history rows
    seen: list[tuple[str, str, str]] = []
    while True:
        seen += _rows(b)
        nxt = b.all("nav.pager a.next")
        if not nxt:
            break
        nxt[0].click()
        b.wait(lambda: "page=" in b.driver.current_url, what="the next page")
    assert len(seen) == total and len(set(seen)) == total
    kinds = {s for _, s, _ in seen}
    assert kinds == {"queue", "quarantine", "history"}
    # The first page again, through its link: the same rows as at the start.
    b.all("nav.pager a.first")[0].click()
    b.wait(lambda: _rows(b) == seen[:10], what="page 1 again")


def test_quick_fields_deep_links_and_saved_filters(admin_browser: Browser,
                                                   console_node: RunningNode) -> None:
    b = admin_browser
    b.open(console_node.console_url, "/tracking")
    b.wait_css("#filter-form input[name=recipient]").send_keys("defer")
    b.css("#filter-form select[name=show] option[value=queue]").click()
    b.css("#search").click()
    b.wait(lambda: "recipient=defer" in b.driver.current_url, what="the search")
    rows = _rows(b)
    assert len(rows) == DEFERRED + 1 and {s for _, s, _ in rows} == {"queue"}
    link = b.css("a.deep-link").get_attribute("href")
    # A typed HQL filter combined with the quick fields, from a deep link alone.
    b.open(console_node.console_url, "/tracking?filter=" + quote('subject~"number 3"') + "&show=queue")
    assert [r[1] for r in _rows(b)] == ["queue"]
    b.open(console_node.console_url, link.split(console_node.console_url, 1)[1])
    assert _rows(b) == rows
    # Saved: stored for this user, listed, and reproducing the view.
    b.css("form.save-filter input[name=name]").send_keys("deferred mail")
    b.css("form.save-filter button").click()
    saved = b.wait(lambda: [a for a in b.all("a.saved-filter") if a.text == "deferred mail"],
                   what="the saved filter")
    b.open(console_node.console_url, "/tracking")
    b.wait(lambda: [a for a in b.all("a.saved-filter") if a.text == "deferred mail"])[0].click()
    b.wait(lambda: _rows(b) == rows, what="the saved view")
    assert saved
    # A bad filter is the node's error, shown; nothing breaks.
    b.open(console_node.console_url, "/tracking?filter=" + quote("nosuchfield=1"))
    assert "nosuchfield" in b.wait_css(".node-errors").text


def test_select_and_bounce_shows_the_count_first_then_per_node_results(
        admin_browser: Browser, console_node: RunningNode) -> None:
    b = admin_browser
    soap = _soap(console_node)
    # Two of the plainly deferred entries (not the hostile one the inspector test reads).
    b.open(console_node.console_url, "/tracking?show=queue&recipient=defer&subject=deferred")
    boxes = b.all("input.sel")
    targets = [x.get_attribute("value") for x in boxes[:2]]
    for box in boxes[:2]:
        box.click()
    b.css("button[data-action=bounce]").click()
    assert b.wait_css("#confirm-count").text == "2"
    assert b.css("#confirm-nodes").text == "1"
    before = soap.service.mailQueueCount(filter="queue=DEFER")
    assert before == DEFERRED + 1  # nothing happened yet
    b.css("#confirm-action").click()
    done = b.wait_css(".results-table td.done", timeout=120)  # two bounces (DSNs) over SOAP
    assert done.text == "2"
    ids = [int(t.split("|")[1]) for t in targets]
    assert soap.service.mailQueueCount(filter=f"queueid={ids[0]} or queueid={ids[1]}") == 0
    bounced = soap.service.mailHistory(filter="action=BOUNCE", offset=0, limit=10,
                                       options={"totalhits": True})
    assert bounced.totalhits == 2
    # "All matches" counts first, on the whole view, and changes nothing until confirmed.
    b.open(console_node.console_url, "/tracking?show=queue&recipient=defer")
    b.css("input[name=scope][value=all]").click()
    b.css("button[data-action=hold]").click()
    assert b.wait_css("#confirm-count").text == str(DEFERRED + 1 - 2)
    assert soap.service.mailQueueCount(filter="queue=HOLD and to~defer") == 0


def test_inspector_shows_record_message_and_log_lines(admin_browser: Browser,
                                                      console_node: RunningNode) -> None:
    b = admin_browser
    b.open(console_node.console_url, "/tracking?show=queue&subject=" + quote("<script>"))
    [row] = b.all("table.rows tr.row")
    subject = row.find_element("css selector", "td.subject").text
    assert subject == HOSTILE_SUBJECT  # shown as text
    _not_pwned(b)
    row.find_element("css selector", "a.inspect").click()
    headers = b.wait_css("pre.headers").text
    assert f"X-Evil: {HOSTILE_HEADER}" in headers and HOSTILE_SUBJECT in headers
    assert "<script>window.__pwned='body'</script>" in b.css("pre.text-part").text
    assert b.css("td[data-field=msgsubject]").text == HOSTILE_SUBJECT
    msgid = b.css("td[data-field=msgid]").text
    log = b.wait_css("pre.log-lines").text
    assert msgid in log and HOSTILE_REPLY in log
    assert b.css("td[data-field=msgerror]").text == HOSTILE_REPLY
    _not_pwned(b)
    assert not b.all("a[href^='javascript']")
    # The same lines in the log search, as text too.
    b.open(console_node.console_url, "/logsearch")
    b.wait_css("#logsearch-form input[name=text]").send_keys(msgid)
    b.css("#start").click()
    b.wait(lambda: HOSTILE_REPLY in b.css("#log-view .lines").text, what="the hostile log line")
    _not_pwned(b)
    assert b.script("return document.querySelectorAll('#log-view img').length") == 0
    b.css("#stop").click()


def test_log_search_renders_only_the_lines_in_view(admin_browser: Browser,
                                                   console_node: RunningNode) -> None:
    b = admin_browser
    soap = _soap(console_node)
    for i in range(60):  # a node log of a few hundred lines
        send(console_node, [f"more{i}@dest.example"], f"more number {i}")
    wait_until(lambda: soap.service.mailHistory(filter="to~more", offset=0, limit=1,
                                                options={"totalhits": True}).totalhits == 60,
               timeout=120, retry=(Exception,), what="the extra mail to be delivered")
    b.open(console_node.console_url, "/logsearch")
    b.wait_css("#logsearch-form input[name=text]").send_keys("appliance")
    b.css("#logsearch-form input[name=follow]").click()  # a one-off search, not followed
    b.css("#start").click()
    total = b.wait(lambda: (lambda n: n if n > 150 and b.css("#status").text == "stopped" else 0)(
        int(b.css("#line-count").text)), timeout=180, what="hundreds of lines, the search ended")
    badge = int(b.css('#badges .badge[data-node="node1"] .count').text)
    assert badge == total
    rendered = len(b.all("#log-view .line"))
    assert 0 < rendered < 100 < total  # only the lines in view (and a margin) are elements
    b.script("var v = document.getElementById('log-view'); v.scrollTop = v.scrollHeight / 2;")
    middle = b.wait(lambda: int(b.all("#log-view .line")[0].get_attribute("data-index")) > 50,
                    what="the lines of the middle to be rendered")
    assert middle and len(b.all("#log-view .line")) < 100


def test_readonly_user_sees_no_mutating_control_and_is_refused_by_hand(
        browser: Browser, console_node: RunningNode) -> None:
    b = browser
    b.driver.delete_all_cookies()
    b.login(console_node.console_url, "viewer", "viewer-password-1")
    b.open(console_node.console_url, "/tracking")
    assert int(b.wait_css("#total").text) > 0
    assert not b.all("input.sel") and not b.all("button[data-action]")
    assert not b.all("nav.pages a[data-nav=users]")
    http = console_node.console_session("viewer", "viewer-password-1")
    page = http.get(console_node.console_url + "/tracking?show=queue", timeout=30).text
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    soap = _soap(console_node)
    entry = soap.service.mailQueue(filter="queue=DEFER", offset=0, limit=1).result.item[0]
    for scope in ("selected", "all"):
        refused = http.post(console_node.console_url + "/tracking/act", timeout=30, data={
            "csrf": token.group(1), "op": "delete", "scope": scope, "confirm": "1",
            "sel": f"node1|{entry.id}"})
        assert refused.status_code == 403
    assert soap.service.mailQueueCount(filter=f"queueid={entry.id}") == 1
    assert http.get(console_node.console_url + "/users", timeout=30,
                    allow_redirects=False).status_code in (403, 404)
