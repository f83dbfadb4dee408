"""The web client does what the API does, in three headless Chromium windows: alice makes a
group with bob and carol from the page, sends a photo that the others see in place, names
show instead of ids, bob takes a picture that shows by his words on the others' pages, bob
finds an old message with the chat's search, alice makes carol an admin and renames the group
from the members panel, carol blocks bob and his words are hidden on her page, bob leaves.
Screenshots land in .infra/test-output/web-client/."""

from __future__ import annotations

import asyncio
import struct
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from infra.layout import Layout
from tests.browser import Page, chromium
from tests.e2e.conftest import BFF, PASSWORD, Clients, eventually

#: An image's natural size once it has loaded from the object store: 0 until then.
NATURAL_WIDTH = (
    "const i = document.querySelector('#messages img.file'); return i ? i.naturalWidth : 0;"
)

#: The same for an avatar found by a CSS selector (shown: hidden ones count as 0).
AVATAR_WIDTH = (
    "const i = document.querySelector(arguments[0]); return i && !i.hidden ? i.naturalWidth : 0;"
)


def _png(path: Path, width: int, height: int) -> Path:
    """A real PNG (a blue-to-red gradient), written with zlib alone."""
    rows = b"".join(
        b"\x00"
        + b"".join(bytes((x * 255 // width, 64, 255 - x * 255 // width)) for x in range(width))
        for _ in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def windows() -> Iterator[list[WebDriver]]:
    opened = [chromium(1100, 800) for _ in range(3)]
    try:
        yield opened
    finally:
        for driver in opened:
            driver.quit()


def _texts(page: Page) -> list[str]:
    found = page.driver.find_elements(By.CSS_SELECTOR, "#messages .message[data-message-id] .text")
    return [e.text for e in found]


def _open_chat_named(page: Page, name: str) -> None:
    def clicked(d: WebDriver) -> bool:
        # The list is drawn again whenever it changes: an item found a moment ago may be gone.
        try:
            for item in d.find_elements(By.CSS_SELECTOR, "#chat-list .chat-item"):
                if item.find_element(By.CSS_SELECTOR, ".name").text.startswith(name):
                    item.click()
                    return True
        except StaleElementReferenceException:
            pass
        return False

    page.wait(clicked)
    page.wait(lambda d: d.find_element(By.ID, "composer").is_enabled())


def _fill(page: Page, element_id: str, text: str) -> None:
    field = page.driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


@pytest.mark.timeout(400)
async def test_a_group_of_three_in_browsers_shares_a_photo_searches_and_blocks(
    clients: Clients, windows: list[WebDriver], tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    names = [f"alice{run}", f"bob{run}", f"carol{run}"]
    for name in names:
        async with clients.http.post(
            f"{BFF}/v1/users", json={"username": name, "password": PASSWORD}
        ) as response:
            assert response.status == 201, await response.text()
    alice, bob, carol = (Page(driver, BFF) for driver in windows)
    out = Layout.from_env().state / "test-output" / "web-client"
    group = f"trip {run}"

    def act(call: Callable[..., Any], *args: Any) -> Any:
        return asyncio.to_thread(call, *args)

    await asyncio.gather(
        *(act(p.log_in, n) for p, n in zip((alice, bob, carol), names, strict=True))
    )

    # Alice makes the group from her page; it opens there and appears on the others'.
    await act(_fill, alice, "new-group-name", group)
    await act(_fill, alice, "new-group-members", f"{names[1]}, {names[2]}")
    await act(lambda: alice.driver.find_element(By.ID, "create-group").click())
    await act(alice.wait, lambda d: d.find_element(By.ID, "chat-title").text == group)
    await asyncio.gather(act(_open_chat_named, bob, group), act(_open_chat_named, carol, group))

    await act(alice.say, "the old plan: meet at the harbour")
    for n in range(5):
        await act(alice.say, f"filler {n}")
    await act(bob.wait, lambda _: _texts(bob)[-1:] == ["filler 4"])

    # A photo: the page hashes and measures it, uploads it straight to the store and names
    # it in a message; the other windows show the image from a presigned link.
    photo = _png(tmp_path / "harbour.png", 48, 32)
    await act(lambda: alice.driver.find_element(By.ID, "file-input").send_keys(str(photo)))
    for page in (alice, bob, carol):
        await act(page.wait, lambda d: d.execute_script(NATURAL_WIDTH) == 48)
    # Names, not ids, over the others' words in a group.
    await act(bob.say, "nice photo")
    await act(
        carol.wait,
        lambda d: (
            names[1] in d.find_element(By.CSS_SELECTOR, "#messages .message:last-child .who").text
        ),
    )

    # Bob takes a display name: carol's page shows it over his words at once (a profile event).
    bob_token = await _token(clients, names[1])
    async with clients.http.put(
        f"{BFF}/v1/me/profile",
        json={"display_name": "Bobby Tables"},
        headers={"Authorization": f"Bearer {bob_token}"},
    ) as response:
        assert response.status == 200, await response.text()
    await act(
        carol.wait,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "#messages .message:last-child .who").text
            == "Bobby Tables"
        ),
    )

    # Bob picks a picture from his page: it shows by his name there and by his words on
    # carol's page (a profile event, then a link from GET /v1/users/{id}/avatar).
    face = _png(tmp_path / "bob.png", 20, 20)
    await act(lambda: bob.driver.find_element(By.ID, "avatar-input").send_keys(str(face)))
    await act(bob.wait, lambda d: d.execute_script(AVATAR_WIDTH, "#my-avatar") == 20)
    last_avatar = "#messages .message:last-child img.avatar"
    await act(carol.wait, lambda d: d.execute_script(AVATAR_WIDTH, last_avatar) == 20)

    # Bob finds the old message with the chat's search.
    await act(_fill, bob, "search-input", "HARBOUR plan")
    await act(lambda: bob.driver.find_element(By.ID, "search-input").submit())
    found = await act(
        bob.wait, lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results li.found")
    )
    assert "the old plan: meet at the harbour" in found[0].text
    assert names[0] in found[0].text
    await act(bob.screenshot, out / "group-search.png")

    # The members panel: carol becomes an admin, the group is renamed.
    await act(lambda: alice.driver.find_element(By.ID, "members-button").click())
    row = "#member-list li[data-user-id] select"
    await act(alice.wait, lambda d: len(d.find_elements(By.CSS_SELECTOR, row)) == 2)
    carol_id = await _user_id(clients, names[2])
    select = f'#member-list li[data-user-id="{carol_id}"] select'
    await act(
        lambda: Select(alice.driver.find_element(By.CSS_SELECTOR, select)).select_by_value("admin")
    )

    async def group_now() -> dict[str, Any]:
        async with clients.http.get(
            f"{BFF}/v1/groups/{await _group_id(clients, names[0])}",
            headers={"Authorization": f"Bearer {await _token(clients, names[0])}"},
        ) as response:
            return dict(await response.json())

    async def carol_is_admin() -> bool:
        found = {m["user_id"]: m["role"] for m in (await group_now())["members"]}
        return found.get(carol_id) == "admin"

    await eventually(carol_is_admin)
    await act(_fill, alice, "rename-input", f"{group} (renamed)")
    await act(lambda: alice.driver.find_element(By.ID, "rename-input").submit())

    async def renamed() -> bool:
        return str((await group_now())["name"]).endswith("(renamed)")

    await eventually(renamed)
    await act(alice.wait, lambda d: d.find_element(By.ID, "chat-title").text.endswith("(renamed)"))
    await act(alice.screenshot, out / "group-members.png")

    # Carol blocks bob (the API's list is what her page hides his words by).
    bob_id = await _user_id(clients, names[1])
    token = await _token(clients, names[2])
    async with clients.http.put(
        f"{BFF}/v1/blocks/{bob_id}", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 204
    await act(carol.driver.refresh)
    await act(carol.wait, lambda d: d.find_element(By.ID, "chat-view").is_displayed())
    await act(_open_chat_named, carol, group)
    await act(carol.wait, lambda d: "Message from someone you blocked" in _texts(carol))
    assert "nice photo" not in await act(_texts, carol)
    await act(carol.screenshot, out / "group-blocked.png")
    await act(alice.screenshot, out / "group-photo.png")

    # Bob leaves from his members panel.
    await act(lambda: bob.driver.find_element(By.ID, "members-button").click())
    await act(bob.wait, lambda d: d.find_element(By.ID, "leave-button").is_displayed())
    await act(lambda: bob.driver.find_element(By.ID, "leave-button").click())
    await act(alice.wait, lambda _: any("left" in t for t in _changes(alice)))


def _changes(page: Page) -> list[str]:
    return [
        e.text
        for e in page.driver.find_elements(By.CSS_SELECTOR, "#messages .message.change .text")
    ]


async def _token(clients: Clients, username: str) -> str:
    async with clients.http.post(
        f"{BFF}/v1/sessions", json={"username": username, "password": PASSWORD}
    ) as response:
        return str((await response.json())["access_token"])


async def _user_id(clients: Clients, username: str) -> str:
    token = await _token(clients, username)
    async with clients.http.get(
        f"{BFF}/v1/users?username={username}", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return str((await response.json())["user_id"])


async def _group_id(clients: Clients, username: str) -> str:
    token = await _token(clients, username)
    async with clients.http.get(
        f"{BFF}/v1/chats", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        chats = (await response.json())["chats"]
    return next(str(c["chat_id"]) for c in chats if c["kind"] == "group")


def test_a_direct_chat_s_peer_is_blocked_and_unblocked_from_the_page(
    windows: list[WebDriver],
) -> None:
    """The header's Block button blocks the peer (the server then refuses their words) and
    turns into Unblock."""
    run = uuid.uuid4().hex[:6]
    pages = [Page(driver, BFF) for driver in windows[:2]]
    names = [f"dana{run}", f"eli{run}"]
    for name in names:
        request = urllib.request.Request(  # noqa: S310 - our own BFF
            f"{BFF}/v1/users",
            data=f'{{"username": "{name}", "password": "{PASSWORD}"}}'.encode(),
            headers={"content-type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - our own BFF
    dana, eli = pages
    dana.log_in(names[0])
    eli.log_in(names[1])
    dana.open_chat_with(names[1])
    eli.open_chat_with(names[0])
    button = dana.wait(lambda d: d.find_element(By.ID, "block-button"))
    assert button.text == "Block"
    button.click()
    dana.wait(lambda d: d.find_element(By.ID, "block-button").text == "Unblock")
    eli.say("are you there?")
    eli.wait(
        lambda d: (
            "not a member"
            in d.find_element(By.CSS_SELECTOR, "#messages .message:last-child time").text
        )
    )
    dana.driver.find_element(By.ID, "block-button").click()
    dana.wait(lambda d: d.find_element(By.ID, "block-button").text == "Block")
