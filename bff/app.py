"""The BFF's HTTP application: which module serves which routes.

- ``bff/session_routes.py``: accounts and sessions (register, log in, refresh, log out);
- ``bff/chat_routes.py``: chats and messages, checked and routed to messaging or history;
- ``bff/block_routes.py``: blocking someone, and the list of whom one blocked;
- ``bff/live.py``: the live stream for browsers (WebSocket, and SSE as the fallback);
- ``bff/routing.py``: which messaging server owns a user; ``bff/views.py``: the JSON shapes;
- ``clients/web/``: the web client, served at ``/``.
"""

from __future__ import annotations

from aiohttp import web

from bff import block_routes, chat_routes, group_routes, live, session_routes
from bff.live import Live
from bff.openapi import DOCUMENT
from bff.routing import BACKENDS, Backends
from bff.session_routes import Accounts
from chatlib import ops, problems
from clients import WEB


def create_app(
    backends: Backends, accounts: Accounts, streams: Live, max_request_bytes: int
) -> web.Application:
    app = web.Application(
        client_max_size=max_request_bytes,
        middlewares=[ops.http_metrics, problems.middleware],
    )
    app[BACKENDS] = backends
    session_routes.add_routes(app, accounts)
    chat_routes.add_routes(app)
    group_routes.add_routes(app)
    block_routes.add_routes(app)
    live.add_routes(app, streams)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/", index)
    app.router.add_static("/web/", WEB, append_version=True)
    return app


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


async def index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "index.html")
