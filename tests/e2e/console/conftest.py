"""Fixtures of the console's tests: one live node (HTTPS) and one headless chromium per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Browser, available
from tests.support.node import RunningNode


@pytest.fixture(scope="module")
def console_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    node = RunningNode(tmp_path_factory.mktemp("console"), scheme="https", ready_timeout=300)
    with node:
        yield node


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    why = available()
    if why:
        pytest.fail(why)
    started = Browser.start()
    try:
        yield started
    finally:
        started.quit()


@pytest.fixture(scope="module")
def admin_browser(browser: Browser, console_node: RunningNode) -> Browser:
    """The module's browser, logged in to the module's node as its admin."""
    browser.login(console_node.console_url, "admin", console_node.admin_password)
    return browser


def admin_soap(node: RunningNode) -> Any:
    """The node's SOAP service as its admin (zeep over HTTPS, trusting the node's certificate)."""
    import requests
    import zeep

    http = requests.Session()
    http.auth = ("admin", node.admin_password)
    http.verify = str(node.cert_path)
    http.trust_env = False
    return zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=http)).service


def screenshot_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "docs" / "screenshots"


def full_page_shot(browser: Browser, page: str) -> None:
    """With APPLIANCE_SCREENSHOTS=1, the whole page (not only the window) into
    docs/screenshots/<page>.png: the state each test built is what the picture shows."""
    import base64
    import os

    if os.environ.get("APPLIANCE_SCREENSHOTS") != "1":
        return

    size = browser.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 2400), "scale": 1}})
    path = screenshot_dir() / f"{page}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
