"""A terminal chat client: ``python -m clients.terminal chat alice --with bob``, or without
``--with`` to pick or create chats and groups with commands (``/help``).

It does what a mobile client does: logs in through the BFF (HTTP), holds a gRPC stream to the
messaging server the BFF names, resumes from its cursor when the stream ends (on another server
when its partition moved), and sends over gRPC with a fresh client_message_id per line, waiting
out the rate limit when told to. It marks what arrives as delivered and what it shows as read
(coalesced, twice a second at most), and shows the others' receipts on your messages
(\N{CHECK MARK} delivered, \N{CHECK MARK}\N{CHECK MARK} read), their typing and presence, and
edits, deletions and reactions. (It reads whole lines, so it cannot tell the others that you
are typing before you press Enter.)

Against an ``https://`` BFF (the cluster) it speaks TLS to the messaging servers too, and
verifies both against ``--ca`` (the deployment's CA; ``CHAT_TLS_CA``), or the system's roots.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import hashlib
import mimetypes
import os
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from chatlib.chat_ids import direct_members
from clients import deployment
from clients.deployment import Deployment
from clients.stream import StreamState, events
from protos.chat.v1 import common_pb2, messaging_pb2, messaging_pb2_grpc


class ClientError(Exception):
    pass


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        if response.status >= 400:
            raise ClientError(f"{response.status}: {body.get('detail', body)}")
        return body


async def register(at: Deployment, username: str, password: str) -> None:
    async with at.http() as http:
        user = await _call(
            http, "POST", f"{at.bff}/v1/users", json={"username": username, "password": password}
        )
    print(f"registered {user['username']} (id {user['user_id']})")


class Session:
    """A logged-in user: the BFF for lookups and group changes, gRPC for sends."""

    def __init__(self, http: aiohttp.ClientSession, at: Deployment, login: dict[str, Any]) -> None:
        self.http = http
        self.at = at
        self.bff = at.bff
        self.user_id = int(login["user_id"])
        self.token = str(login["access_token"])
        self.server = str(login["messaging_server"])
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.names: dict[int, str] = {}
        #: Display names, where users chose one (what is shown instead of their username).
        self.shown: dict[int, str] = {}
        #: The chat lines go to; None until one is opened.
        self.chat_id: str | None = None
        #: The open chat's messages as numbered on screen (#1...), both ways.
        self.numbers: dict[int, int] = {}
        self.by_number: dict[int, int] = {}
        #: Own messages shown in the open chat, oldest first (what receipts are about).
        self.mine: list[int] = []
        #: Per member of the open chat: the own message (#) last shown as delivered, as read.
        self.ticks: dict[tuple[int, bool], int] = {}
        #: Marks to send: (chat id, read?) -> up to.
        self.marks: dict[tuple[str, bool], int] = {}
        #: The files of the open chat's messages, by their number on screen.
        self.files: dict[int, list[dict[str, Any]]] = {}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await _call(self.http, method, f"{self.bff}{path}", headers=self.auth, **kwargs)

    def channel(self, target: str) -> grpc.aio.Channel:
        """One channel per messaging server dialled (a stream may move between them)."""
        if target not in self.channels:
            self.channels[target] = self.at.dial(target)
        return self.channels[target]

    async def locate(self) -> str:
        """Ask the BFF where this user's stream is now (after the server stopped answering)."""
        with contextlib.suppress(ClientError, aiohttp.ClientError):
            found = await self.call("GET", "/v1/sessions/current/messaging-server")
            self.server = str(found["messaging_server"])
        return self.server

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()

    async def user_id_of(self, name: str) -> int:
        for user_id, known in self.names.items():
            if known == name.lower():
                return user_id
        user = await self.call("GET", "/v1/users", params={"username": name})
        self.learn(user)
        return int(user["user_id"])

    def learn(self, user: dict[str, Any]) -> None:
        """A user's username and display name (a user, a profile or a profile event)."""
        user_id = int(user["user_id"])
        self.names[user_id] = str(user["username"])
        self.shown[user_id] = str(user.get("display_name") or "")

    def shown_name(self, user_id: int) -> str:
        return self.shown.get(user_id) or self.names.get(user_id) or str(user_id)

    async def name_of(self, user_id: int) -> str:
        if user_id not in self.names:
            try:
                self.learn(await self.call("GET", f"/v1/users/{user_id}"))
            except ClientError:
                return str(user_id)
        return self.shown_name(user_id)

    async def open(self, chat_id: str, title: str) -> None:
        self.chat_id = chat_id
        self.numbers, self.by_number, self.mine, self.ticks = {}, {}, [], {}
        self.files = {}
        page = await self.call("GET", f"/v1/chats/{chat_id}/messages?limit=20")
        print(f"-- {title} ({chat_id})")
        for message in reversed(page["messages"]):
            body = "(deleted)" if message.get("deleted") else message["body"]
            if message.get("edited_at_ms"):
                body += " (edited)"
            reactions = " ".join(f"{r['emoji']}{r['count']}" for r in message.get("reactions", []))
            self.show(
                int(message["message_id"]),
                int(message["sender_id"]),
                f"{body}  {reactions}" if reactions else body,
                message["created_at_ms"],
                message.get("attachments", []),
            )
        if page["messages"]:
            self.mark(chat_id, int(page["messages"][0]["message_id"]), read=True)

    def show(
        self,
        message_id: int,
        sender: int,
        body: str,
        created_ms: int,
        files: list[dict[str, Any]] | None = None,
    ) -> None:
        number = len(self.numbers) + 1
        self.numbers[message_id] = number
        self.by_number[number] = message_id
        if sender == self.user_id:
            self.mine.append(message_id)
        stamp = time.strftime("%H:%M:%S", time.localtime(created_ms / 1000))
        print(f"[{stamp}] #{number} {self.shown_name(sender)}: {body}", flush=True)
        if files:
            self.files[number] = [{**f, "message_id": message_id} for f in files]
            for f in files:
                size = max(1, round(int(f["size"]) / 1024))
                what = f"{f['name']} ({f['content_type']}, {size} KiB)"
                print(f"      \N{PAPERCLIP} {what}: /get {number}")

    def mark(self, chat_id: str, message_id: int, *, read: bool) -> None:
        key = (chat_id, read)
        self.marks[key] = max(self.marks.get(key, 0), message_id)

    async def send_marks(self) -> None:
        """Send the marks collected since the last call (one per chat and kind)."""
        marks, self.marks = self.marks, {}
        for (chat_id, read), message_id in marks.items():
            path = f"/v1/chats/{chat_id}/{'read' if read else 'delivered'}"
            with contextlib.suppress(ClientError, aiohttp.ClientError):
                await self.call("POST", path, json={"message_id": str(message_id)})

    def message_id(self, number: str) -> int:
        found = (
            self.by_number.get(int(number.lstrip("#"))) if number.lstrip("#").isdigit() else None
        )
        if found is None:
            raise ClientError(f"no message {number} in this chat (numbers are shown as #N)")
        return found


HELP = """commands:
  /with NAME               open the direct chat with NAME
  /new NAME USER...        create a group called NAME with USERs and open it
  /open CHAT_ID            open a chat from /chats
  /chats                   list your chats (with group names and unread counts)
  /add USER...             add users to the open group
  /remove USER             remove a user from the open group
  /leave                   leave the open group
  /members                 list the open group's members and roles
  /who                     who of the open chat is online (or when last seen)
  /search WORDS            the open chat's messages holding every word, newest first
  /name [TEXT]             your display name (none: your username)
  /picture PATH            your avatar (a PNG, JPEG, GIF or WebP of at most 5 MiB)
  /send-file PATH          send a file (straight to the object store, then a message naming it)
  /get N                   save the files of message #N here
  /edit N TEXT             edit your message #N
  /delete N                delete message #N (yours; any, for a group's owner or admin)
  /react N EMOJI           react to message #N (/unreact N EMOJI takes it back)
  /help                    this text
anything else is sent to the open chat; ctrl-d quits"""


async def chat(
    at: Deployment, username: str, password: str, peer: str | None, group: str | None
) -> None:
    async with at.http() as http:
        login = await _call(
            http,
            "POST",
            f"{at.bff}/v1/sessions",
            json={"username": username, "password": password},
        )
        me = Session(http, at, login)
        me.names[me.user_id] = username.lower()
        if peer:
            await _command(me, f"/with {peer}")
        elif group:
            await _command(me, f"/open {group}")
        else:
            print(HELP)
            await _command(me, "/chats")
        receiver = asyncio.create_task(_receive(me))
        try:
            await _read_lines(me)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
            await me.close()


async def _command(me: Session, line: str) -> None:
    """Run one /command; errors are printed, the client goes on."""
    word, _, rest = line.partition(" ")
    args = rest.split()
    try:
        if word == "/with" and len(args) == 1:
            peer = await me.user_id_of(args[0])
            room = await me.call("POST", "/v1/chats/direct", json={"peer_id": str(peer)})
            await me.open(room["chat_id"], f"chatting with {args[0]}")
        elif word == "/new" and args:
            members = [str(await me.user_id_of(name)) for name in args[1:]]
            group = await me.call(
                "POST", "/v1/groups", json={"name": args[0], "member_ids": members}
            )
            await me.open(group["chat_id"], f"group {group['name']}")
        elif word == "/open" and len(args) == 1:
            await me.open(args[0], "chat")
        elif word == "/chats":
            for row in (await me.call("GET", "/v1/chats"))["chats"]:
                if row["kind"] == "group":
                    title = f"group {row['name']}" + ("" if row["member"] else " (left)")
                else:
                    others = [int(m) for m in row["member_ids"] if int(m) != me.user_id]
                    title = "with " + ", ".join([await me.name_of(m) for m in others] or ["you"])
                print(f"  {row['chat_id']:<28} {title:<30} unread {row['unread_count']}")
        elif word in ("/edit", "/delete", "/react", "/unreact") and me.chat_id and args:
            path = f"/v1/chats/{me.chat_id}/messages/{me.message_id(args[0])}"
            if word == "/edit" and len(args) > 1:
                await me.call("PATCH", path, json={"body": rest.split(None, 1)[1]})
            elif word == "/delete" and len(args) == 1:
                await me.call("DELETE", path)
            elif word in ("/react", "/unreact") and len(args) == 2:
                emoji = urllib.parse.quote(args[1], safe="")
                await me.call("PUT" if word == "/react" else "DELETE", f"{path}/reactions/{emoji}")
            else:
                print(HELP)
        elif word == "/search" and me.chat_id and args:
            query = urllib.parse.quote(rest.strip())
            found = await me.call("GET", f"/v1/chats/{me.chat_id}/search?q={query}&limit=20")
            for message in reversed(found["messages"]):
                stamp = time.strftime(
                    "%Y-%m-%d %H:%M", time.localtime(message["created_at_ms"] / 1000)
                )
                name = await me.name_of(int(message["sender_id"]))
                print(f"  [{stamp}] {name}: {message['body']}")
            print(
                f"-- {len(found['messages'])} found"
                + (" (older ones too)" if found["has_more"] else "")
            )
        elif word == "/name":
            me.learn(await me.call("PUT", "/v1/me/profile", json={"display_name": rest.strip()}))
            print(f"-- you are shown as {me.shown_name(me.user_id)}")
        elif word == "/picture" and args:
            await _set_picture(me, rest.strip())
        elif word == "/send-file" and me.chat_id and args:
            await _send_file(me, me.chat_id, rest.strip())
        elif word == "/get" and me.chat_id and len(args) == 1:
            await _get_files(me, me.chat_id, args[0])
        elif word == "/who" and me.chat_id:
            await _who(me, me.chat_id)
        elif word in ("/add", "/remove", "/leave", "/members") and _group_open(me):
            path = f"/v1/groups/{me.chat_id}"
            if word == "/add" and args:
                ids = [str(await me.user_id_of(name)) for name in args]
                await me.call("POST", f"{path}/members", json={"user_ids": ids})
            elif word == "/remove" and len(args) == 1:
                await me.call("DELETE", f"{path}/members/{await me.user_id_of(args[0])}")
            elif word == "/leave":
                await me.call("DELETE", f"{path}/members/{me.user_id}")
            elif word == "/members":
                group = await me.call("GET", path)
                for member in group["members"]:
                    name = await me.name_of(int(member["user_id"]))
                    print(f"  {name:<24} {member['role']}")
            else:
                print(HELP)
        else:
            print(HELP)
    except ClientError as exc:
        print(f"-- {exc}")


async def _who(me: Session, chat_id: str) -> None:
    if chat_id.startswith("g:"):
        group = await me.call("GET", f"/v1/groups/{chat_id}")
        members = [int(m["user_id"]) for m in group["members"]]
    else:
        members = sorted(direct_members(chat_id))
    others = [m for m in members if m != me.user_id][:200]
    if not others:
        return
    ids = ",".join(str(m) for m in others)
    for presence in (await me.call("GET", f"/v1/presence?user_ids={ids}"))["presences"]:
        print(f"  {await me.name_of(int(presence['user_id'])):<24} {_presence(presence)}")


def _presence(presence: dict[str, Any]) -> str:
    if presence["online"]:
        return "online"
    seen = presence["last_seen_ms"]
    when = time.strftime("%H:%M:%S", time.localtime(seen / 1000)) if seen else "never"
    return f"offline (last seen {when})"


def _group_open(me: Session) -> bool:
    if me.chat_id is None or not me.chat_id.startswith("g:"):
        print("-- open a group first (/new or /open)")
        return False
    return True


async def _receive(me: Session) -> None:
    """Show the open chat's messages as they arrive (and say where else something came),
    wherever the stream has to move."""
    state = StreamState(me.server)

    async def send_marks() -> None:
        while True:
            await asyncio.sleep(0.5)
            await me.send_marks()

    marking = asyncio.create_task(send_marks())
    try:
        while True:
            try:
                async for event in events(state, me.token, me.channel, me.locate):
                    await _on_event(me, event)
            except grpc.aio.AioRpcError as exc:
                print(f"-- stream ended ({exc.code().name}: {exc.details()}); reconnecting")
                await asyncio.sleep(1)
    finally:
        marking.cancel()


async def _on_event(me: Session, event: messaging_pb2.ClientEvent) -> None:
    kind = event.WhichOneof("event")
    if kind == "message":
        m = event.message
        name = await me.name_of(m.sender_id)
        if m.sender_id != me.user_id:
            me.mark(m.chat_id, m.message_id, read=m.chat_id == me.chat_id)
        if m.HasField("amendment"):
            if m.chat_id == me.chat_id:
                print(f"-- {name} {_amended(me, m)}", flush=True)
        elif me.chat_id is None and m.HasField("change"):
            me.chat_id = m.chat_id  # added to a group: talk there
            print(f"-- {m.body}; you are in {m.chat_id} now (/chats to switch)")
        elif m.chat_id == me.chat_id:
            files = [
                {
                    "attachment_id": str(a.attachment_id),
                    "name": a.name,
                    "size": a.size,
                    "content_type": a.content_type,
                    "sha256": a.sha256,
                }
                for a in m.attachments
            ]
            me.show(m.message_id, m.sender_id, m.body, m.created_at_ms, files)
        elif m.HasField("change"):
            print(f"-- in {m.chat_id}: {m.body}", flush=True)
        else:
            print(f"-- new message from {name} in {m.chat_id}", flush=True)
    elif kind == "receipt" and event.receipt.chat_id == me.chat_id:
        receipt = event.receipt
        if receipt.user_id != me.user_id:
            for read, up_to in ((False, receipt.delivered_up_to), (True, receipt.read_up_to)):
                await _tick(me, receipt.user_id, up_to, read=read)
    elif kind == "typing" and event.typing.chat_id == me.chat_id and not event.typing.stopped:
        print(f"-- {await me.name_of(event.typing.user_id)} is typing\N{HORIZONTAL ELLIPSIS}")
    elif kind == "presence":
        p = event.presence
        shown = _presence({"online": p.online, "last_seen_ms": p.last_seen_ms})
        print(f"-- {await me.name_of(p.user_id)} is {shown}")
    elif kind == "profile":
        before = me.shown_name(event.profile.user_id)
        me.learn(
            {
                "user_id": event.profile.user_id,
                "username": event.profile.username,
                "display_name": event.profile.display_name,
            }
        )
        after = me.shown_name(event.profile.user_id)
        print(f"-- {before} changed their profile" + (f": now {after}" if after != before else ""))
    elif kind == "resync_required":
        print("-- missed too much while away; showing only new messages")


def _amended(me: Session, m: common_pb2.Message) -> str:
    a = m.amendment
    number = me.numbers.get(a.message_id)
    which = f"#{number}" if number else "an older message"
    if a.action == common_pb2.Amendment.EDITED:
        return f"edited {which}: {m.body}"
    if a.action == common_pb2.Amendment.DELETED:
        return f"deleted {which}"
    if a.action == common_pb2.Amendment.REACTION_ADDED:
        return f"reacted {a.emoji} to {which}"
    return f"took back {a.emoji} on {which}"


async def _tick(me: Session, user: int, up_to: int, *, read: bool) -> None:
    """Say how far a member got through your messages, when it moved."""
    covered = [message_id for message_id in me.mine if message_id <= up_to]
    if not covered:
        return
    number = me.numbers[covered[-1]]
    if me.ticks.get((user, read), 0) >= number:
        return
    me.ticks[(user, read)] = number
    ticks = "\N{CHECK MARK}" * (2 if read else 1)
    print(f"-- {ticks} #{number} {'read by' if read else 'delivered to'} {await me.name_of(user)}")


async def _read_lines(me: Session) -> None:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.startswith("/"):
            await _command(me, text.strip())
        elif me.chat_id is None:
            print("-- open a chat first (/with, /new, /open; /help)")
        else:
            await _send(me, me.chat_id, text)


async def _upload(me: Session, name: str, path_of_upload: str) -> tuple[Path, bytes, str] | None:
    """Read a file and PUT it with the presigned URL the BFF answers at ``path_of_upload``:
    (the path, its bytes, the upload's id), or None, said why, if it could not."""
    path = Path(name)
    try:
        data = await asyncio.to_thread(lambda: path.expanduser().read_bytes())
    except OSError as exc:
        print(f"-- cannot read {path}: {exc.strerror}")
        return None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    declared = {"size": len(data), "content_type": kind}
    if path_of_upload.endswith("/attachments"):
        declared["name"] = path.name
    upload = await me.call("POST", path_of_upload, json=declared)
    async with me.http.put(upload["url"], data=data, headers=upload["headers"]) as response:
        if response.status != 200:
            print(f"-- the store refused the upload ({response.status})")
            return None
    return path, data, str(upload["attachment_id"])


async def _send_file(me: Session, chat_id: str, name: str) -> None:
    """Upload straight to the store, then send a message naming the file."""
    uploaded = await _upload(me, name, f"/v1/chats/{chat_id}/attachments")
    if uploaded is not None:
        path, data, attachment_id = uploaded
        attachment = common_pb2.Attachment(
            attachment_id=int(attachment_id), sha256=hashlib.sha256(data).hexdigest()
        )
        await _send(me, chat_id, path.name, [attachment])


async def _set_picture(me: Session, name: str) -> None:
    """Upload an avatar straight to the store, then make it the profile's."""
    uploaded = await _upload(me, name, "/v1/me/avatar")
    if uploaded is not None:
        await me.call("PUT", "/v1/me/profile", json={"avatar_id": uploaded[2]})
        print(f"-- your picture is {uploaded[0].name}")


async def _get_files(me: Session, chat_id: str, which: str) -> None:
    """Save message #N's files in the working directory (a name already there gets a
    number), checking each against the sender's SHA-256."""
    files = me.files.get(int(which)) if which.isdigit() else None
    if not files:
        print(f"-- message #{which} has no files here")
        return
    for f in files:
        path = f"/v1/chats/{chat_id}/messages/{f['message_id']}/attachments/{f['attachment_id']}"
        link: dict[str, Any] | None = None
        for _ in range(20):  # 503 only for the moment between a send and its file's record
            try:
                link = await me.call("GET", path)
                break
            except ClientError as exc:
                if not str(exc).startswith("503"):
                    raise
                await asyncio.sleep(0.3)
        if link is None:
            print(f"-- {f['name']}: not available yet; try again")
            continue
        async with me.http.get(link["url"]) as response:
            data = await response.read()
            if response.status != 200:
                print(f"-- {f['name']}: the store answered {response.status}")
                continue
        target = await asyncio.to_thread(_save, f["name"], data)
        check = hashlib.sha256(data).hexdigest()
        verdict = (
            ""
            if not f.get("sha256")
            else (", checksum ok" if check == f["sha256"] else ", CHECKSUM MISMATCH")
        )
        print(f"-- saved {target} ({len(data)} bytes{verdict})")


def _save(name: str, data: bytes) -> Path:
    """``data`` in the working directory under the file's own name, or with a number added
    when that name is taken."""
    plain = Path(Path(name).name or "file")
    target = plain
    for n in range(1, 1000):
        if not target.exists():
            break
        target = Path(f"{plain.stem} ({n}){plain.suffix}")
    target.write_bytes(data)
    return target


async def _send(
    me: Session, chat_id: str, text: str, files: list[common_pb2.Attachment] | None = None
) -> None:
    metadata = (("authorization", f"Bearer {me.token}"),)
    request = messaging_pb2.SendRequest(
        chat_id=chat_id, client_message_id=uuid.uuid4().hex, body=text, attachments=files or []
    )
    for attempt in range(5):  # the same client_message_id on every retry: no duplicates
        if attempt:
            await me.locate()  # its server may have died: any live one takes the send
        stub = messaging_pb2_grpc.MessagingServiceStub(me.channel(me.server))
        try:
            await stub.Send(request, metadata=metadata, timeout=10)
            return
        except grpc.aio.AioRpcError as exc:
            retry_ms = dict(exc.trailing_metadata() or ()).get("chat-retry-after-ms")
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_ms:
                print(f"-- {exc.details()}")
                await asyncio.sleep(int(str(retry_ms)) / 1000)
                continue
            if exc.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                print(f"-- not sent: {exc.details()}")
                return
            await asyncio.sleep(0.5 * (attempt + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat-client", description=__doc__)
    here = deployment.local()
    parser.add_argument(
        "--bff",
        default=here.bff,
        help="BFF base URL, https:// for TLS (default: the stack ./dev runs here, or CHAT_BFF_URL)",
    )
    parser.add_argument(
        "--ca",
        default=str(here.ca) if here.ca else None,
        help="the CA (PEM file) to verify the BFF and messaging servers against over TLS;"
        " without it, the system's roots (default: the cluster's own CA when ./dev runs it"
        " here, or CHAT_TLS_CA)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    reg = commands.add_parser("register", help="create a user")
    reg.add_argument("username")
    talk = commands.add_parser(
        "chat", help="log in and chat (direct chats and groups; /help inside lists commands)"
    )
    talk.add_argument("username")
    talk.add_argument("--with", dest="peer", help="open the direct chat with this user")
    talk.add_argument("--group", help="open this group (its chat id, g:...)")
    args = parser.parse_args(argv)
    at = Deployment(args.bff, ca=Path(args.ca) if args.ca else None)
    try:
        at.ssl_context()
    except OSError as exc:
        print(f"error: cannot read the CA file {args.ca}: {exc.strerror}", file=sys.stderr)
        return 2
    password = os.environ.get("CHAT_PASSWORD") or getpass.getpass("password: ")
    try:
        if args.command == "register":
            asyncio.run(register(at, args.username, password))
        else:
            asyncio.run(chat(at, args.username, password, args.peer, args.group))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except aiohttp.ClientConnectorCertificateError as exc:
        problem = exc.certificate_error
        print(f"error: the BFF's certificate did not verify: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
