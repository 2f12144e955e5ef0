"""Fixtures of the console's tests: one live node (HTTPS) and one headless chromium per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


def screenshot_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "docs" / "screenshots"
