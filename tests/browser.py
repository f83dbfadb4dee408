"""Debian's headless Chromium, driven through its chromedriver, and a page of the web client
as a person uses it (every method blocks: run it in a thread)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import PASSWORD

WAIT_SECONDS = 30


def trusting(ca: Path, home: Path) -> Path:
    """A HOME whose certificate store (NSS's, which Chromium reads on Linux) trusts ``ca`` to
    name web servers, as a user who imported it has."""
    store = home / ".pki" / "nssdb"
    store.mkdir(parents=True, exist_ok=True)
    certutil = shutil.which("certutil") or "certutil"
    subprocess.run([certutil, "-d", f"sql:{store}", "-N", "--empty-password"], check=True)
    subprocess.run(
        [certutil, "-d", f"sql:{store}", "-A", "-t", "C,,", "-n", "cluster CA", "-i", str(ca)],
        check=True,
    )
    return home


def chromium(width: int, height: int, home: Path | None = None) -> WebDriver:
    """A headless Chromium window. ``home`` is its HOME: the certificates it trusts besides the
    system's are in ``home/.pki/nssdb`` (``trusting``)."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite runs as root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    service = Service(
        executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver",
        env={**os.environ, "HOME": str(home)} if home is not None else None,
    )
    return webdriver.Chrome(options=options, service=service)


class Page:
    """One person's browser window; every method blocks (run it in a thread)."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.driver = driver
        self.base = base

    def wait(self, condition: Callable[[WebDriver], Any]) -> Any:
        # The page draws lists and bubbles again as events come: an element a condition
        # found may be replaced before it is read, which means "not yet", not a failure.
        return WebDriverWait(
            self.driver,
            WAIT_SECONDS,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(condition)

    def log_in(self, username: str) -> None:
        self.driver.get(f"{self.base}/")
        self.wait(lambda d: d.find_element(By.ID, "username").is_displayed())
        self.driver.find_element(By.ID, "username").send_keys(username)
        self.driver.find_element(By.ID, "password").send_keys(PASSWORD)
        self.driver.find_element(By.ID, "login").click()
        self.wait(lambda d: d.find_element(By.ID, "chat-view").is_displayed())

    def open_chat_with(self, username: str) -> None:
        field = self.driver.find_element(By.ID, "new-chat-username")
        field.send_keys(username)
        self.driver.find_element(By.ID, "open-chat").click()
        self.wait(lambda d: d.find_element(By.ID, "composer").is_enabled())

    def say(self, text: str) -> None:
        box = self.driver.find_element(By.ID, "composer")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def type_without_sending(self, text: str) -> None:
        self.driver.find_element(By.ID, "composer").send_keys(text)

    def clear_composer(self) -> None:
        self.driver.find_element(By.ID, "composer").clear()

    def text_of(self, css: str) -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def bodies(self) -> list[str]:
        """Bodies of the messages shown with an id (sent or received, not pending)."""
        found = self.driver.find_elements(By.CSS_SELECTOR, "#messages .message[data-message-id]")
        return [e.text.rsplit("\n", 1)[0] for e in found]

    def wait_for(self, bodies: list[str]) -> list[str]:
        return list(self.wait(lambda _: (b := self.bodies())[-len(bodies) :] == bodies and b))

    def offline(self) -> bool:
        return bool(self.driver.find_element(By.ID, "offline-banner").is_displayed())

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
