#!/usr/bin/env python3
"""Screenshots of the console's pages into docs/screenshots/<page>.png.

    python tools/screenshots.py [PAGE ...]

Starts a live node (HTTPS) with some mail in its queue and history, drives Debian's chromium
through the test harness (tests/support/browser.py) and saves one PNG per page. Pages are the
names of SHOTS below; console pages added later get a line there.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "clients"))

from tests.e2e.console.mail import CONFIG, send  # noqa: E402
from tests.e2e.delivery.sink import Sink  # noqa: E402
from tests.support.browser import Browser, available  # noqa: E402
from tests.support.node import RunningNode  # noqa: E402

OUT = REPO / "docs" / "screenshots"


def _logsearch(b: Browser) -> None:
    b.wait_css("#logsearch-form input[name=text]").send_keys("dest.example")
    b.css("#start").click()
    b.wait(lambda: int(b.css("#line-count").text) > 10, what="log lines")
    b.css("#stop").click()
    b.wait(lambda: b.css("#status").text == "stopped", what="stopped")


def _inspect(b: Browser) -> None:
    b.css("table.rows tr.row a.inspect").click()
    b.wait_css("pre.log-lines")


def _select(b: Browser) -> None:
    for box in b.all("input.sel")[:3]:
        box.click()
    b.css("button[data-action=bounce]").click()
    b.wait_css("#confirm-count")


# name -> (path, what to do before the shot)
SHOTS: dict[str, tuple[str, Callable[[Browser], None] | None]] = {
    "overview": ("/", None),
    "tracking": ("/tracking?size=25", _select),
    "inspector": ("/tracking?show=queue", _inspect),
    "logsearch": ("/logsearch", _logsearch),
    "users": ("/users", None),
    "cluster": ("/cluster", None),
}


def main(names: list[str]) -> int:
    why = available()
    if why:
        print(why, file=sys.stderr)
        return 1
    wanted = names or list(SHOTS)
    with tempfile.TemporaryDirectory() as tmp, Sink() as sink:
        sink.handler.rcpt_replies = {f"defer{i}@dest.example": "451 4.2.0 mailbox busy, try later"
                                     for i in range(20)}
        with RunningNode(Path(tmp), scheme="https", config_text=CONFIG,
                         relay=("127.0.0.1", sink.port)) as node:
            node.add_user("ops", "readonly", "ops-password-1")
            for i in range(12):
                send(node, [f"user{i}@dest.example"], f"Invoice {1000 + i} for March",
                     sender=f"billing{i % 3}@shop.example")
            for i in range(8):
                send(node, [f"defer{i}@dest.example"], f"Weekly report {i}",
                     sender="reports@corp.example")
            send(node, ["quarantine@dest.example"], "You have won a prize")
            time.sleep(3)  # let delivery take the first attempts (only for nicer pictures)
            browser = Browser.start()
            try:
                browser.driver.set_window_size(1400, 900)
                browser.login(node.console_url, "admin", node.admin_password)
                for name in wanted:
                    path, before = SHOTS[name]
                    browser.open(node.console_url, path)
                    if before is not None:
                        before(browser)
                    browser.screenshot(OUT / f"{name}.png")
                    print(f"docs/screenshots/{name}.png")
            finally:
                browser.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
