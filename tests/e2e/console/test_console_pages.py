"""Reporting, Rate control, Scripts, Configuration and Terminal in chromium against one live
HTTPS node: real-time graphs and math over series, a script edited, tried and saved, a config
error shown at its line and column and nothing saved, a revision reverted, a command run and
interrupted in the terminal, and a read-only user without any mutating control."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.console.conftest import admin_soap
from tests.e2e.console.conftest import full_page_shot as _shot
from tests.support.browser import Browser
from tests.support.node import RunningNode
from tests.support.wait import wait_until

CONFIG = """
[stats]
flush_interval = 0.2
graph_interval = 1.0
rrd_step = 1

[scripts]
limit = \"\"\"function rcpt_to(s, r)
  if rate("outbound", r:match("^([^@]*)@"), 5, 3600) then return accept() end
  return defer(451, "4.7.1 over the limit")
end\"\"\"

[[listeners]]
id = "inbound"
port = 2525
script = "limit"
"""

READONLY = ("watcher", "watcher-password-1")

SCRIPT = """function data(session, message)
  print("checking " .. session.sender)
  if message.subject:match("SPAM") then
    return reject(550, "5.7.1 spam")
  end
  return accept()
end
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    running = RunningNode(tmp_path_factory.mktemp("console-pages"), scheme="https",
                          config_text=CONFIG, ready_timeout=300)
    with running:
        running.add_user(*READONLY[:1], "readonly", READONLY[1])
        yield running


@pytest.fixture(scope="module")
def soap(node: RunningNode) -> Any:
    return admin_soap(node)


@pytest.fixture(scope="module")
def admin(browser: Browser, node: RunningNode) -> Browser:
    browser.login(node.console_url, "admin", node.admin_password)
    return browser


def _typed(text: str) -> str | None:
    return text if "-- checked in the console" in text else None


def _csp_violations(browser: Browser) -> list[str]:
    return [m for m in browser.console_errors() if "Content Security Policy" in m]


def _rcpt(node: RunningNode, local: str) -> int:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("sender@example.org")
        code, _ = smtp.rcpt(f"{local}@dest.example")
        smtp.rset()
    return code


def test_reporting_draws_every_graph_live_graphs_and_math_over_series(
        admin: Browser, node: RunningNode, soap: Any) -> None:
    base = node.console_url
    wait_until(lambda: {"queue", "cpu"} <= set(soap.graphList() or []), what="the first graphs")
    # A custom series over the cpu graph's sources, given in the page's deep link.
    admin.open(base, "/reporting?range=1h&legend=busy&expr=user%2Bsystem&legend=ratio&expr=100*user/(user%2Bidle)")
    cards = admin.wait(lambda: admin.all(".graph-card"), what="the graph cards")
    names = {c.get_attribute("data-graph") for c in cards}
    assert {"queue", "cpu"} <= names
    cpu = admin.css('.graph-card[data-graph="cpu"]')
    admin.wait(lambda: int(cpu.get_attribute("data-points") or 0) > 0, what="the cpu graph's points")
    series = cpu.get_attribute("data-series").split("|")
    assert {"user", "system", "idle", "busy", "ratio"} <= set(series)
    queue = admin.css('.graph-card[data-graph="queue"]')
    admin.wait(lambda: int(queue.get_attribute("data-points") or 0) > 0, what="the queue graph")
    # The expressions do not fit the queue graph's sources: drawn without them, and said so.
    assert "busy" not in queue.get_attribute("data-series").split("|")
    assert "unknown series 'user'" in queue.find_element("css selector", ".graph-note").text

    # Real-time: statd -g cpu through commandRun, one sample a second, the same expressions.
    name = admin.css("#live-name")
    name.clear()
    name.send_keys("cpu")
    admin.css("#live-start").click()
    plot = admin.css("#live-plot")
    admin.wait(lambda: int(plot.get_attribute("data-points") or 0) >= 3, timeout=45,
               what="three real-time samples")
    data = admin.script("return arguments[0].uplot.data;", plot)
    live_names = plot.get_attribute("data-series").split("|")
    assert {"cpu:user", "cpu:system", "busy"} <= set(live_names)
    user, system, busy = (data[1 + live_names.index(n)] for n in ("cpu:user", "cpu:system", "busy"))
    pairs = [(u, s, b) for u, s, b in zip(user, system, busy) if u is not None and s is not None]
    assert pairs and all(b == pytest.approx(u + s) for u, s, b in pairs)
    assert any(u + s > 0 for u, s, _ in pairs)  # the CPU did something while sampled
    _shot(admin, "reporting")
    admin.css("#live-stop").click()
    admin.wait(lambda: admin.css("#live-start").is_enabled(), what="the real-time graph to stop")

    # Pie charts: rate() buckets of one namespace after mail went through the policy.
    for local in ("alice", "alice", "bob"):
        assert _rcpt(node, local) == 250
    pie = admin.css('.pie-form[data-kind="rate"]')
    pie.find_element("css selector", 'input[name="ns"]').send_keys("outbound")
    pie.find_element("css selector", "button").click()
    canvas = pie.find_element("css selector", "canvas")
    admin.wait(lambda: canvas.get_attribute("data-slices") == "2", what="two slices (alice, bob)")
    assert not _csp_violations(admin)


def test_rate_control_colours_buckets_and_clears_one(admin: Browser, node: RunningNode,
                                                      soap: Any) -> None:
    for local in ("carol", "carol", "carol", "dave"):
        assert _rcpt(node, local) == 250
    admin.open(node.console_url, "/rates?ns=outbound&warn=2&crit=3")
    # The table refreshes itself every 2 s: every look finds the rows anew.
    admin.wait(lambda: admin.css('tr[data-entry="carol"]').get_attribute("data-level") == "crit",
               what="carol's bucket, critical at 3 hits")
    assert admin.css('tr[data-entry="dave"]').get_attribute("data-level") == "ok"
    assert admin.css('tr[data-entry="alice"]').get_attribute("data-level") == "warn"
    # The view saved under a name comes back from the list of this user's views.
    admin.css('#save-rate-view input[name="name"]').send_keys("busy senders")
    admin.css("#save-rate-view button").click()
    admin.open(node.console_url, "/rates")
    admin.wait_css('.saved-view[data-name="busy senders"] a').click()
    admin.wait(lambda: admin.css('tr[data-entry="carol"]').get_attribute("data-level") == "crit",
               what="the saved view's thresholds")
    assert admin.css('#rate-filter input[name="warn"]').get_attribute("value") == "2"
    _shot(admin, "rates")
    admin.wait(lambda: admin.css('tr[data-entry="carol"] form.clear-one button').click() or True,
               what="the clear button")
    admin.wait(lambda: not admin.all('tr[data-entry="carol"]'), what="carol's bucket gone")
    left = {r.entry for r in soap.hslRate("outbound", "%", 0, 100) or []}
    assert "carol" not in left and "dave" in left


def test_script_edited_tested_in_the_sandbox_diffed_and_saved(admin: Browser, node: RunningNode,
                                                              soap: Any) -> None:
    before = len(soap.configRevisionLog(0, 100) or [])
    admin.open(node.console_url, "/scripts/spamcheck")
    page = admin.wait_css("#script-page")
    admin.wait(lambda: admin.script("return !!arguments[0].editor;", page), what="the editor")
    admin.script("var v = arguments[0].editor; v.dispatch({changes: {from: 0, to: v.state.doc.length, "
                 "insert: arguments[1]}});", page, SCRIPT)
    # And typed, as a person would: a comment at the end of the script.
    content = admin.css("#editor").shadow_root.find_element("css selector", ".cm-content")
    content.click()
    admin.script("var v = arguments[0].editor; v.dispatch({selection: {anchor: v.state.doc.length}});", page)
    content.send_keys("-- checked in the console")
    text = admin.wait(lambda: _typed(admin.script("return arguments[0].editor.state.doc.toString();", page)),
                      what="the typed comment")
    assert text.startswith("function data") and text.rstrip().endswith("-- checked in the console")
    # Lua is highlighted: the keywords carry their own token classes.
    tokens = admin.script("return arguments[0].shadowRoot.querySelectorAll('.cm-content span').length;",
                          admin.css("#editor"))
    assert tokens > 5

    message = admin.css('#test-form textarea[name="message"]')
    message.clear()
    message.send_keys("From: a@example.org\nSubject: buy SPAM now\n\nbody\n")
    admin.css("#run-test").click()
    decision = admin.css("#decision")
    admin.wait(lambda: decision.get_attribute("data-decision"), what="the sandbox's decision")
    assert decision.get_attribute("data-decision").startswith("reject 550")
    outputs = [li.text for li in admin.all("#test-result li.kind-output")]
    assert any("checking sender@example.org" in o for o in outputs)

    admin.css("#show-diff").click()
    diff = admin.css("#diff")
    admin.wait(lambda: int(diff.get_attribute("data-chunks") or 0) >= 1, what="the diff's chunks")

    admin.css("#save-comment").send_keys("spam check from the browser")
    admin.css("#save").click()
    status = admin.css("#save-status")
    revision = int(admin.wait(lambda: status.get_attribute("data-revision"), what="the new revision"))
    assert soap.configKeyGet("scripts.spamcheck") == text
    log = soap.configRevisionLog(0, 100)
    assert len(log) == before + 1 and log[0].id == revision
    assert log[0].author == "admin" and log[0].comment == "spam check from the browser"
    _shot(admin, "scripts")
    # The running revision is now the saved text: nothing left to diff.
    admin.wait(lambda: diff.get_attribute("data-chunks") == "0", what="an empty diff after saving")


def test_config_error_shown_at_line_and_column_nothing_saved_then_revert(
        admin: Browser, node: RunningNode, soap: Any) -> None:
    base = node.console_url
    log = soap.configRevisionLog(0, 100)
    admin.open(base, "/config")
    box = admin.wait_css("#config-editor")
    admin.wait(lambda: admin.script("return !!arguments[0].editor;", box), what="the editor")
    current = admin.script("return arguments[0].editor.state.doc.toString();", box)
    lines = current.count("\n") + 1
    broken = current + "\n[smtp\nprocesses = 2\n"
    admin.script("var v = arguments[0].editor; v.dispatch({changes: {from: 0, to: v.state.doc.length, "
                 "insert: arguments[1]}});", box, broken)
    admin.css("#config-save").click()
    problem = admin.wait(lambda: admin.css("#config-problems li"), what="the problem's line")
    assert problem.get_attribute("data-line") == str(lines + 1)
    assert problem.get_attribute("data-column") == "6"
    assert "TOML syntax" in problem.text
    # Marked in the editor too, and nothing was saved.
    marks = admin.script("return arguments[0].shadowRoot.querySelectorAll('.cm-lintRange-error, .cm-lint-marker-error').length;",
                         admin.css("#config-cm"))
    assert marks >= 1
    assert len(soap.configRevisionLog(0, 100)) == len(log)
    _shot(admin, "config")

    # Revert to the first revision (the defaults the node booted with).
    first = log[-1].id
    assert soap.configTextGet() != soap.configTextGet(first)
    admin.open(base, "/config")
    admin.wait_css(f'button.revert[data-revision="{first}"]').click()
    admin.driver.switch_to.alert.accept()
    reverted = admin.wait(lambda: admin.css("#reverted"), what="the revert's answer")
    made = int(reverted.get_attribute("data-revision"))
    assert made == soap.configRevisionLog(0, 1)[0].id
    assert soap.configTextGet() == soap.configTextGet(first)
    # The diff of the two newest revisions is on the page with its changed lines.
    assert admin.all("#config-diff .diff-line-del")


def test_terminal_runs_a_command_and_interrupts_a_following_one(admin: Browser,
                                                                node: RunningNode) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    admin.open(node.console_url, "/terminal")
    term = admin.wait_css('#terminal[data-state="idle"]')
    screen = "var b = arguments[0].term.buffer.active, out = []; for (var i = 0; i < b.length; i++) " \
             "{ out.push(b.getLine(i).translateToString(true)); } return out.join('\\n');"
    keys = term.find_element("css selector", ".xterm-helper-textarea")
    keys.send_keys("queuestat" + Keys.ENTER)
    admin.wait(lambda: "TRANSPORT" in admin.script(screen, term) and
               term.get_attribute("data-state") == "idle", what="queuestat's output")
    assert "[has ended (exit 0)]" in admin.script(screen, term)

    keys.send_keys("statd -g queue" + Keys.ENTER)
    admin.wait(lambda: admin.script(screen, term).count("queue:active=") >= 2, timeout=45,
               what="two samples of statd -g queue")
    assert term.get_attribute("data-state") == "running"
    ActionChains(admin.driver).key_down(Keys.CONTROL).send_keys_to_element(keys, "c").key_up(Keys.CONTROL).perform()
    admin.wait(lambda: "(interrupted)" in admin.script(screen, term) and
               term.get_attribute("data-state") == "idle", what="the interrupted command")
    _shot(admin, "terminal")
    assert not _csp_violations(admin)


def test_readonly_user_sees_no_mutating_control_and_is_refused_by_hand(
        browser: Browser, node: RunningNode, soap: Any) -> None:
    base = node.console_url
    browser.logout()
    browser.login(base, *READONLY)
    expected_absent = {
        "/rates?ns=outbound": ["form.clear-one", "form.clear-all"],
        "/scripts/limit": ["#save", "#run-test", "#new-script"],
        "/config": ["#config-save", "button.revert", "form.override-form"],
    }
    for path, selectors in expected_absent.items():
        browser.open(base, path)
        browser.wait_css("main h1")
        for selector in selectors:
            assert not browser.all(selector), f"{selector} shown to a read-only user on {path}"
    # What only reads is open to it: log search, real-time graphs (statd) and the terminal,
    # where the node lets it run the commands that read (searchlog, statd, queuestat, ...).
    for path, selector in (("/logsearch", "#logsearch-form"), ("/reporting", "#live-start"),
                           ("/terminal", "#terminal")):
        browser.open(base, path)
        browser.wait_css(selector)
    # Saved views are per user: the admin's is not this user's.
    browser.open(base, "/rates")
    assert not browser.all('.saved-view[data-name="busy senders"]')
    # The read-only editor shows the script but does not take input.
    browser.open(base, "/scripts/limit")
    page = browser.wait_css("#script-page")
    browser.wait(lambda: browser.script("return !!arguments[0].editor;", page), what="the editor")
    assert browser.script("return arguments[0].editor.state.readOnly;", page) is True

    # Posting by hand: the console passes it to the API, which refuses it as for any client.
    http = node.console_session(*READONLY)
    token = _csrf(http, base)
    before = len(soap.configRevisionLog(0, 100))
    for path, body in (("/scripts/save", {"id": "limit", "text": "-- nothing"}),
                       ("/config/save", {"text": "[smtp]\n"}),
                       ("/terminal/run", {"line": "dnslookup example.org"}),
                       ("/scripts/test", {"flow": "data", "script": "", "message": ""})):
        got = http.post(base + path, json=body, headers={"X-CSRF-Token": token}, timeout=30)
        assert got.status_code == 400 and "access denied" in got.json()["error"], (path, got.text)
    got = http.post(base + "/rates/clear", data={"csrf": token, "clear_ns": "outbound"}, timeout=30)
    assert got.status_code == 403
    # A log search runs for it (searchlog only reads), audited like every commandRun.
    got = http.post(base + "/logsearch/start", data={"text": "no-such-line", "follow": "0"},
                    headers={"X-CSRF-Token": token}, timeout=30)
    assert got.status_code == 200 and got.json()["nodes"], got.text
    assert len(soap.configRevisionLog(0, 100)) == before


def _csrf(http: requests.Session, base: str) -> str:
    import re

    page = http.get(base + "/reporting", timeout=30).text
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found
    return found.group(1)
