"""The web client in a real browser: two headless Chromium windows (Debian's chromium driven
through its chromedriver) log in as alice and bob and chat both ways (read ticks, presence,
typing); bob's network is cut and restored, and he gets every message sent meanwhile exactly
once.

Bob's browser reaches the BFF through a TCP proxy the test can cut, as a dropped Wi-Fi would.
Screenshots of both pages are written to .infra/test-output/web-client/.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from infra.layout import Layout
from tests.browser import Page, chromium
from tests.e2e.conftest import BFF, PASSWORD, Admin, Clients
from tests.tcp_proxy import CuttableProxy


@pytest.fixture
def browsers() -> Iterator[list[WebDriver]]:
    opened = [chromium(1280, 800), chromium(390, 844)]  # a laptop and a phone-sized window
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


@pytest.mark.timeout(300)
async def test_scrolling_up_reads_back_through_200_messages(
    clients: Clients, admin: Admin, browsers: list[WebDriver]
) -> None:
    """The web client pages history as its reader scrolls up: from the newest page to the
    first message, each once and in order, and it knows when there is no more."""
    await admin.change("limits", send_rate_per_second=1000.0, send_burst=1000)
    alice, bob, chat = await clients.pair()
    sent = [f"old {n}" for n in range(200)]
    for text in sent:
        await alice.send(chat, text)
    page = Page(browsers[0], BFF)

    def act(call: Callable[..., Any], *args: Any) -> Any:
        return asyncio.to_thread(call, *args)

    await act(page.log_in, bob.username)
    await act(page.open_chat_with, alice.username)
    await act(page.wait_for, sent[-10:])
    shown = await act(page.bodies)
    assert len(shown) < len(sent)  # the newest page only
    while len(shown) < len(sent):
        await act(page.driver.execute_script, SCROLL_TO_TOP)
        await act(page.wait, _more_than(page, len(shown)))
        shown = await act(page.bodies)
    assert await act(page.bodies) == sent
    # At the first message there is nothing older to ask for: scrolling changes nothing.
    await act(page.driver.execute_script, SCROLL_TO_TOP)
    await asyncio.sleep(1.0)
    assert await act(page.bodies) == sent
    out = Layout.from_env().state / "test-output" / "web-client"
    await act(page.screenshot, out / "scrolled-back.png")


SCROLL_TO_TOP = 'document.getElementById("messages").scrollTop = 0;'


def _more_than(page: Page, count: int) -> Callable[[WebDriver], bool]:
    return lambda _: len(page.bodies()) > count


#: Draws one emoji in black on a canvas and counts the pixels that came out in colour: an
#: emoji font draws the bowl in its colours; without one Chromium draws an empty black box.
COLOURED_PIXELS = """
const canvas = document.createElement("canvas");
canvas.width = 64;
canvas.height = 64;
const pen = canvas.getContext("2d");
pen.fillStyle = "#000";
pen.textBaseline = "top";
pen.font = "48px sans-serif";
pen.fillText("\\u{1F35C}", 4, 4);
const pixels = pen.getImageData(0, 0, 64, 64).data;
let coloured = 0;
for (let i = 0; i < pixels.length; i += 4) {
  const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
  if (a > 0 && (Math.abs(r - g) > 16 || Math.abs(g - b) > 16)) coloured += 1;
}
return coloured;
"""


def test_the_browser_draws_emoji_in_colour(browsers: list[WebDriver]) -> None:
    """``./dev`` installs a colour emoji font, so the web client's reactions are readable in
    the screenshots rather than empty boxes."""
    driver = browsers[0]
    driver.get(f"{BFF}/")
    assert driver.execute_script(COLOURED_PIXELS) > 100
