"""The OpenAPI document and the routes the BFF serves cannot drift: every route of the app is
described, and everything described is a route (the app is built, nothing is served)."""

from __future__ import annotations

from typing import Any, cast

from bff.app import create_app
from bff.openapi import DOCUMENT

#: Served but not part of the JSON API: the web client and the document itself.
NOT_API = {("get", "/"), ("get", "/web"), ("get", "/v1/openapi.json")}
METHODS = {"get", "post", "put", "delete", "patch"}


def test_the_openapi_document_describes_exactly_the_routes_served() -> None:
    app = create_app(cast(Any, None), cast(Any, None), cast(Any, None), 1 << 20)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method.lower() in METHODS
    }
    described = {
        (method, path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }
    websocket = {("get", DOCUMENT["x-websocket"]["path"])}
    assert described == served - NOT_API - websocket
    assert websocket <= served
