"""The web client in a real browser: two headless Chromium windows (Debian's chromium driven
through its chromedriver) log in as alice and bob and chat both ways (read ticks, presence,
typing); bob's network is cut and restored, and he gets every message sent meanwhile exactly
once.

Bob's browser reaches the BFF through a TCP proxy the test can cut, as a dropped Wi-Fi would.
Screenshots of both pages are written to .infra/test-output/web-client/.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from infra.layout import Layout
from tests.e2e.conftest import BFF, PASSWORD, Clients
from tests.tcp_proxy import CuttableProxy

WAIT_SECONDS = 30


def _browser(width: int, height: int) -> WebDriver:
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
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


class Page:
    """One person's browser window; every method blocks (run it in a thread)."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.driver = driver
        self.base = base

    def wait(self, condition: Callable[[WebDriver], Any]) -> Any:
        return WebDriverWait(self.driver, WAIT_SECONDS).until(condition)

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


@pytest.fixture
def browsers() -> Iterator[list[WebDriver]]:
    opened = [_browser(1280, 800), _browser(390, 844)]  # a laptop and a phone-sized window
    try:
        yield opened
    finally:
        for driver in opened:
            driver.quit()


@pytest.mark.timeout(300)
async def test_two_people_chat_in_browsers_and_a_dropped_network_loses_nothing(
    clients: Clients, browsers: list[WebDriver]
) -> None:
    run = uuid.uuid4().hex[:6]
    names = {"alice": f"alice{run}", "bob": f"bob{run}"}
    for name in names.values():
        async with clients.http.post(
            f"{BFF}/v1/users", json={"username": name, "password": PASSWORD}
        ) as response:
            assert response.status == 201, await response.text()
    proxy = CuttableProxy("127.0.0.1", int(BFF.rsplit(":", 1)[1]))
    await proxy.start()
    alice = Page(browsers[0], BFF)
    bob = Page(browsers[1], f"http://127.0.0.1:{proxy.port}")
    out = Layout.from_env().state / "test-output" / "web-client"

    def act(call: Callable[..., Any], *args: Any) -> Any:
        return asyncio.to_thread(call, *args)

    try:
        await asyncio.gather(act(alice.log_in, names["alice"]), act(bob.log_in, names["bob"]))
        await act(alice.open_chat_with, names["bob"])
        await act(bob.open_chat_with, names["alice"])

        await act(alice.say, "hi bob")
        await act(bob.wait_for, ["hi bob"])
        await act(bob.say, "hi alice")
        await act(alice.wait_for, ["hi bob", "hi alice"])
        # Bob's page showed "hi bob", so it marked it read: two ticks under it on Alice's;
        # Bob is online in her header; her typing shows on his page.
        mine = "#messages .message.mine time"
        await act(alice.wait, lambda _: "\N{CHECK MARK}\N{CHECK MARK}" in alice.text_of(mine))
        await act(alice.wait, lambda _: alice.text_of("#presence") == "online")
        await act(alice.type_without_sending, "typing this")
        await act(bob.wait, lambda _: "typing" in bob.text_of("#typing"))
        await act(alice.clear_composer)

        # Bob's network goes away; alice keeps talking.
        await proxy.cut()
        await act(bob.wait, lambda _: bob.offline())
        meanwhile = [f"while you were away {n}" for n in range(3)]
        for text in meanwhile:
            await act(alice.say, text)
        await act(alice.wait_for, meanwhile)

        # Back: every message once, in order, and the banner gone.
        await proxy.start()
        shown = await act(bob.wait_for, meanwhile)
        await act(bob.wait, lambda _: not bob.offline())
        assert shown == ["hi bob", "hi alice", *meanwhile]
        await act(bob.say, "back now")
        await act(alice.wait_for, [*meanwhile, "back now"])
        assert await act(alice.bodies) == ["hi bob", "hi alice", *meanwhile, "back now"]
        assert await act(bob.bodies) == ["hi bob", "hi alice", *meanwhile, "back now"]
    finally:
        await act(alice.screenshot, out / "alice.png")
        await act(bob.screenshot, out / "bob.png")
        await proxy.close()
