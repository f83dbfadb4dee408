"""A terminal chat client: ``python -m messaging.client chat alice --with bob``, or without
``--with`` to pick or create chats and groups with commands (``/help``).

It does what a mobile client does: logs in through the BFF (HTTP), holds a gRPC stream to the
messaging server the BFF names, resumes from its cursor when the stream ends (on another server
when its partition moved), and sends over gRPC with a fresh client_message_id per line, waiting
out the rate limit when told to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
import time
import uuid
from typing import Any

import aiohttp
import grpc

from messaging.stream_client import StreamState, events
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc

DEFAULT_BFF = os.environ.get("CHAT_BFF_URL", "http://127.0.0.1:8080")


class ClientError(Exception):
    pass


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        if response.status >= 400:
            raise ClientError(f"{response.status}: {body.get('detail', body)}")
        return body


async def register(bff: str, username: str, password: str) -> None:
    async with aiohttp.ClientSession() as http:
        user = await _call(
            http, "POST", f"{bff}/v1/users", json={"username": username, "password": password}
        )
    print(f"registered {user['username']} (id {user['user_id']})")


class Session:
    """A logged-in user: the BFF for lookups and group changes, gRPC for sends."""

    def __init__(self, http: aiohttp.ClientSession, bff: str, login: dict[str, Any]) -> None:
        self.http = http
        self.bff = bff
        self.user_id = int(login["user_id"])
        self.token = str(login["access_token"])
        self.server = str(login["messaging_server"])
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.names: dict[int, str] = {}
        #: The chat lines go to; None until one is opened.
        self.chat_id: str | None = None

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await _call(self.http, method, f"{self.bff}{path}", headers=self.auth, **kwargs)

    async def user_id_of(self, name: str) -> int:
        for user_id, known in self.names.items():
            if known == name.lower():
                return user_id
        user = await self.call("GET", "/v1/users", params={"username": name})
        self.names[int(user["user_id"])] = user["username"]
        return int(user["user_id"])

    async def name_of(self, user_id: int) -> str:
        if user_id not in self.names:
            try:
                user = await self.call("GET", f"/v1/users/{user_id}")
            except ClientError:
                return str(user_id)
            self.names[user_id] = user["username"]
        return self.names[user_id]

    async def open(self, chat_id: str, title: str) -> None:
        self.chat_id = chat_id
        page = await self.call("GET", f"/v1/chats/{chat_id}/messages?limit=20")
        print(f"-- {title} ({chat_id})")
        for message in reversed(page["messages"]):
            _show(self.names, int(message["sender_id"]), message["body"], message["created_at_ms"])


HELP = """commands:
  /with NAME               open the direct chat with NAME
  /new NAME USER...        create a group called NAME with USERs and open it
  /open CHAT_ID            open a chat from /chats
  /chats                   list your chats (with group names and unread counts)
  /add USER...             add users to the open group
  /remove USER             remove a user from the open group
  /leave                   leave the open group
  /members                 list the open group's members and roles
  /help                    this text
anything else is sent to the open chat; ctrl-d quits"""


async def chat(bff: str, username: str, password: str, peer: str | None, group: str | None) -> None:
    async with aiohttp.ClientSession() as http:
        login = await _call(
            http, "POST", f"{bff}/v1/sessions", json={"username": username, "password": password}
        )
        me = Session(http, bff, login)
        me.names[me.user_id] = username.lower()
        if peer:
            await _command(me, f"/with {peer}")
        elif group:
            await _command(me, f"/open {group}")
        else:
            print(HELP)
            await _command(me, "/chats")
        metadata = (("authorization", f"Bearer {me.token}"),)
        async with grpc.aio.insecure_channel(me.server) as channel:
            stub = messaging_pb2_grpc.MessagingServiceStub(channel)
            receiver = asyncio.create_task(_receive(me))
            try:
                await _read_lines(me, stub, metadata)
            finally:
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver


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


def _group_open(me: Session) -> bool:
    if me.chat_id is None or not me.chat_id.startswith("g:"):
        print("-- open a group first (/new or /open)")
        return False
    return True


async def _receive(me: Session) -> None:
    """Show the open chat's messages as they arrive (and say where else something came),
    wherever the stream has to move."""
    state = StreamState(me.server)
    channels: dict[str, grpc.aio.Channel] = {}

    def channel_for(target: str) -> grpc.aio.Channel:
        if target not in channels:
            channels[target] = grpc.aio.insecure_channel(target)
        return channels[target]

    try:
        while True:
            try:
                async for event in events(state, me.token, channel_for):
                    kind = event.WhichOneof("event")
                    if kind == "message":
                        m = event.message
                        await me.name_of(m.sender_id)
                        if me.chat_id is None and m.HasField("change"):
                            me.chat_id = m.chat_id  # added to a group: talk there
                            print(f"-- {m.body}; you are in {m.chat_id} now (/chats to switch)")
                        elif m.chat_id == me.chat_id:
                            _show(me.names, m.sender_id, m.body, m.created_at_ms)
                        elif m.HasField("change"):
                            print(f"-- in {m.chat_id}: {m.body}", flush=True)
                        else:
                            name = await me.name_of(m.sender_id)
                            print(f"-- new message from {name} in {m.chat_id}", flush=True)
                    elif kind == "resync_required":
                        print("-- missed too much while away; showing only new messages")
            except grpc.aio.AioRpcError as exc:
                print(f"-- stream ended ({exc.code().name}: {exc.details()}); reconnecting")
                await asyncio.sleep(1)
    finally:
        for channel in channels.values():
            await channel.close()


async def _read_lines(
    me: Session,
    stub: messaging_pb2_grpc.MessagingServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
) -> None:
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
            await _send(stub, metadata, me.chat_id, text)


async def _send(
    stub: messaging_pb2_grpc.MessagingServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    chat_id: str,
    text: str,
) -> None:
    request = messaging_pb2.SendRequest(
        chat_id=chat_id, client_message_id=uuid.uuid4().hex, body=text
    )
    for attempt in range(5):  # the same client_message_id on every retry: no duplicates
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


def _show(names: dict[int, str], sender: int, body: str, created_ms: int) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(created_ms / 1000))
    print(f"[{stamp}] {names.get(sender, sender)}: {body}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m messaging.client", description=__doc__)
    parser.add_argument("--bff", default=DEFAULT_BFF, help="BFF base URL")
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
    password = os.environ.get("CHAT_PASSWORD") or getpass.getpass("password: ")
    try:
        if args.command == "register":
            asyncio.run(register(args.bff, args.username, password))
        else:
            asyncio.run(chat(args.bff, args.username, password, args.peer, args.group))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
