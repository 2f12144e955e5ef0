"""The console's login, session, CSRF and headers, in chromium and over plain HTTP."""

from __future__ import annotations

import re

import pytest
import requests

from tests.support.browser import Browser
from tests.support.node import RunningNode


def _anonymous(node: RunningNode) -> requests.Session:
    http = requests.Session()
    http.verify = str(node.cert_path)
    http.trust_env = False
    return http


def _login_token(http: requests.Session, node: RunningNode) -> str:
    page = http.get(node.console_url + "/login", timeout=30)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_browser_logs_in_sees_every_page_and_logs_out(browser: Browser,
                                                      console_node: RunningNode) -> None:
    base = console_node.console_url
    browser.open(base, "/")
    browser.wait(lambda: "/login" in browser.driver.current_url, what="the redirect to /login")
    browser.login(base, "admin", console_node.admin_password)
    cards = browser.wait(lambda: browser.all(".node-card"), what="the overview's node cards")
    assert "(this node)" in cards[0].text and "ACTIVE" in cards[0].text
    names = [a.get_attribute("data-nav") for a in browser.all("nav.pages a")]
    assert names[0] == "overview"
    cookie = browser.driver.get_cookie("__Host-console")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # The layout runs under the CSP without a single violation (no inline script or style).
    assert not [m for m in browser.console_errors() if "Content Security Policy" in m]
    browser.logout()
    browser.open(base, "/")
    browser.wait(lambda: "/login" in browser.driver.current_url, what="the logged-out redirect")


def test_headers_of_every_page(console_node: RunningNode) -> None:
    http = console_node.console_session()
    for path in ("/", "/login"):
        got = http.get(console_node.console_url + path, timeout=30)
        csp = got.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert got.headers["X-Frame-Options"] == "DENY"
        assert got.headers["Cache-Control"] == "no-store"
    # SOAP, health and metrics are where they were.
    assert http.get(console_node.console_url + "/healthz", timeout=30).status_code == 200
    wsdl = http.get(console_node.console_url + "/remote/?wsdl", timeout=30)
    assert wsdl.status_code == 200 and b"definitions" in wsdl.content


def test_post_without_or_with_a_wrong_csrf_token_is_refused(console_node: RunningNode) -> None:
    http = console_node.console_session()
    base = console_node.console_url
    assert http.post(base + "/logout", timeout=30, allow_redirects=False).status_code == 403
    refused = http.post(base + "/logout", data={"csrf": "x" * 43}, timeout=30,
                        allow_redirects=False)
    assert refused.status_code == 403
    # Still logged in: neither attempt did anything.
    assert http.get(base + "/", timeout=30, allow_redirects=False).status_code == 200
    # A foreign Origin is refused even with the right token.
    token = re.search(r'name="csrf" value="([^"]+)"', http.get(base + "/", timeout=30).text)
    assert token
    foreign = http.post(base + "/logout", data={"csrf": token.group(1)}, timeout=30,
                        headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert foreign.status_code == 403
    done = http.post(base + "/logout", data={"csrf": token.group(1)}, timeout=30,
                     allow_redirects=False)
    assert done.status_code == 303
    assert http.get(base + "/", timeout=30, allow_redirects=False).status_code == 302


def test_a_planted_session_id_is_not_the_one_logged_in(console_node: RunningNode) -> None:
    base = console_node.console_url
    attacker = _anonymous(console_node)
    _login_token(attacker, console_node)
    planted = attacker.cookies["__Host-console"]
    victim = _anonymous(console_node)
    victim.cookies.set("__Host-console", planted, domain="127.0.0.1", path="/")
    token = _login_token(victim, console_node)  # the planted pre-login session is reused...
    assert victim.cookies["__Host-console"] == planted
    done = victim.post(base + "/login", timeout=30, allow_redirects=False, data={
        "username": "admin", "password": console_node.admin_password, "csrf": token})
    assert done.status_code == 303
    # ...but the login issued a new id, and the planted one is not logged in.
    assert victim.cookies["__Host-console"] != planted
    assert victim.get(base + "/", timeout=30, allow_redirects=False).status_code == 200
    assert attacker.get(base + "/", timeout=30, allow_redirects=False).status_code == 302


def test_failed_logins_are_throttled_like_the_api(console_node: RunningNode) -> None:
    console_node.add_user("guessed", "readonly", "right-password-1")
    http = _anonymous(console_node)
    statuses = []
    for _ in range(7):
        token = _login_token(http, console_node)
        statuses.append(http.post(console_node.console_url + "/login", timeout=30, data={
            "username": "guessed", "password": "wrong", "csrf": token}).status_code)
    assert statuses[0] == 401 and statuses[-1] == 429
    # The same throttle as the API's: even the right password is refused while blocked.
    token = _login_token(http, console_node)
    blocked = http.post(console_node.console_url + "/login", timeout=30, data={
        "username": "guessed", "password": "right-password-1", "csrf": token})
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    soap = requests.post(console_node.soap_url, data=b"<x/>", timeout=30,
                         verify=str(console_node.cert_path),
                         auth=("guessed", "right-password-1"),
                         headers={"Content-Type": "text/xml", "SOAPAction": '"getSerial"'})
    assert soap.status_code == 429


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x"])
def test_login_never_redirects_off_site(console_node: RunningNode, target: str) -> None:
    http = _anonymous(console_node)
    token = _login_token(http, console_node)
    done = http.post(console_node.console_url + "/login", timeout=30, allow_redirects=False,
                     data={"username": "admin", "password": console_node.admin_password,
                           "csrf": token, "next": target})
    assert done.status_code == 303 and done.headers["Location"] == "/"


def test_admin_adds_changes_and_deletes_a_user(browser: Browser, console_node: RunningNode) -> None:
    b = browser
    b.driver.delete_all_cookies()
    b.login(console_node.console_url, "admin", console_node.admin_password)
    b.open(console_node.console_url, "/users")
    form = b.wait_css("form.add-user")
    form.find_element("name", "username").send_keys("carol")
    form.find_element("name", "password").send_keys("carol-password-1")
    form.find_element("css selector", "button[type=submit]").click()
    row = b.wait_css('tr[data-user="carol"]')
    assert "readonly" in row.text and "node1: done" in b.css(".results").text
    row.find_element("css selector", "form.passwd input[name=password]").send_keys("carol-password-2")
    row.find_element("css selector", "form.passwd button").click()
    b.wait(lambda: "new password for carol" in b.css(".results").text, what="the password change")
    console_node.console_session("carol", "carol-password-2")  # the new password works
    b.script("window.confirm = function () { return true; };")
    b.css('tr[data-user="carol"] form.delete button').click()
    b.wait(lambda: not b.all('tr[data-user="carol"]'), what="carol gone")
    with pytest.raises(RuntimeError):
        console_node.console_session("carol", "carol-password-2")
    b.open(console_node.console_url, "/cluster")
    text = b.wait_css("main").text
    # A node on its own: not in a cluster, or a cluster of one that answers.
    assert "not in a cluster" in text or (len(b.all("table.members tr[data-serial]")) == 1
                                          and b.all("table.members td.answers .ok"))
