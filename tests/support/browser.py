"""Debian's chromium driven by Selenium (chromium-driver), headless, for the console's tests.

    browser = Browser.start()          # or the `browser` fixture of a test module
    browser.login(console, "admin", password)
    browser.open(console, "/tracking")

Nothing is downloaded: the driver is /usr/bin/chromedriver and the browser /usr/bin/chromium
(`tools/setup.sh --test` installs both). The node's self-signed certificate is accepted
through the driver's acceptInsecureCerts.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")

T = TypeVar("T")


def available() -> str:
    """Why the browser cannot run here, or '' when it can."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return f"{' and '.join(missing)} missing (bash tools/setup.sh --test installs them)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return ""


class Browser:
    def __init__(self, driver: Any, profile: Path) -> None:
        self.driver = driver
        self._profile = profile

    @classmethod
    def start(cls) -> "Browser":
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        profile = Path(tempfile.mkdtemp(prefix="console-browser-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.accept_insecure_certs = True
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        return cls(driver, profile)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    # -- navigation ------------------------------------------------------------------------

    def open(self, base: str, path: str = "/") -> None:
        self.driver.get(base.rstrip("/") + path)

    def login(self, base: str, username: str, password: str) -> None:
        from selenium.webdriver.common.by import By

        self.open(base, "/login")
        self.driver.find_element(By.NAME, "username").send_keys(username)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        self.wait(lambda: "/login" not in self.driver.current_url, what="the login to finish")

    def logout(self) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
        self.wait(lambda: "/login" in self.driver.current_url, what="the logout")

    # -- finding and waiting ---------------------------------------------------------------

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def wait(self, condition: Callable[[], T], *, timeout: float = 30.0, what: str = "") -> T:
        """Poll `condition` until it returns something true (exceptions count as not yet)."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            try:
                value = condition()
                if value:
                    return value
            except Exception as exc:  # stale or missing elements while a page changes
                last = exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what or condition}; last error: {last}")
            time.sleep(0.05)

    def wait_css(self, selector: str, *, timeout: float = 30.0) -> Any:
        return self.wait(lambda: self.css(selector), timeout=timeout, what=selector)

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def console_errors(self) -> list[str]:
        """The page's console messages of level SEVERE (CSP violations show up here)."""
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
