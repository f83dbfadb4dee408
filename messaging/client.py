"""A terminal chat client: ``python -m messaging.client chat alice --with bob``.

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


async def chat(bff: str, username: str, password: str, peer: str) -> None:
    async with aiohttp.ClientSession() as http:
        session = await _call(
            http, "POST", f"{bff}/v1/sessions", json={"username": username, "password": password}
        )
        auth = {"Authorization": f"Bearer {session['access_token']}"}
        room = await _call(
            http, "POST", f"{bff}/v1/chats/direct", json={"peer_username": peer}, headers=auth
        )
        chat_id = room["chat_id"]
        names = {int(session["user_id"]): username}
        names.update({int(m): peer for m in room["member_ids"] if int(m) not in names})
        page = await _call(http, "GET", f"{bff}/v1/chats/{chat_id}/messages?limit=20", headers=auth)
        for message in reversed(page["messages"]):
            _show(names, int(message["sender_id"]), message["body"], message["created_at_ms"])
        print(f"-- chatting with {peer} in {chat_id}; type a line and press enter, ctrl-d quits")
        metadata = (("authorization", f"Bearer {session['access_token']}"),)
        async with grpc.aio.insecure_channel(session["messaging_server"]) as channel:
            stub = messaging_pb2_grpc.MessagingServiceStub(channel)
            receiver = asyncio.create_task(
                _receive(session["messaging_server"], session["access_token"], chat_id, names)
            )
            try:
                await _send_lines(stub, metadata, chat_id)
            finally:
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver


async def _receive(address: str, token: str, chat_id: str, names: dict[int, str]) -> None:
    """Show the chat's messages as they arrive, wherever the stream has to move."""
    state = StreamState(address)
    channels: dict[str, grpc.aio.Channel] = {}

    def channel_for(target: str) -> grpc.aio.Channel:
        if target not in channels:
            channels[target] = grpc.aio.insecure_channel(target)
        return channels[target]

    try:
        while True:
            try:
                async for event in events(state, token, channel_for):
                    kind = event.WhichOneof("event")
                    if kind == "message" and event.message.chat_id == chat_id:
                        m = event.message
                        _show(names, m.sender_id, m.body, m.created_at_ms)
                    elif kind == "resync_required":
                        print("-- missed too much while away; showing only new messages")
            except grpc.aio.AioRpcError as exc:
                print(f"-- stream ended ({exc.code().name}: {exc.details()}); reconnecting")
                await asyncio.sleep(1)
    finally:
        for channel in channels.values():
            await channel.close()


async def _send_lines(
    stub: messaging_pb2_grpc.MessagingServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    chat_id: str,
) -> None:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        text = line.rstrip("\n")
        if not text.strip():
            continue
        request = messaging_pb2.SendRequest(
            chat_id=chat_id, client_message_id=uuid.uuid4().hex, body=text
        )
        for attempt in range(5):  # the same client_message_id on every retry: no duplicates
            try:
                await stub.Send(request, metadata=metadata, timeout=10)
                break
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
                    break
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
    talk = commands.add_parser("chat", help="log in and chat with another user")
    talk.add_argument("username")
    talk.add_argument("--with", dest="peer", required=True, help="the other user's name")
    args = parser.parse_args(argv)
    password = os.environ.get("CHAT_PASSWORD") or getpass.getpass("password: ")
    try:
        if args.command == "register":
            asyncio.run(register(args.bff, args.username, password))
        else:
            asyncio.run(chat(args.bff, args.username, password, args.peer))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
