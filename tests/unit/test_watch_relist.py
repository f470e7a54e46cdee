"""The watch loop's answers to what only a long-lived cluster shows: 410 Gone, in the
stream or as the response (a resourceVersion compacted away), and a LIST in pages. The
API server is played by a local aiohttp server speaking its wire format; the rest of the
protocol is tested against the real one (tests/integration/test_watching.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import kopf
from aiohttp import web
from aiohttp.test_utils import TestServer

from callstorage.apiserver import ApiServer
from callstorage.watching import WATCH_INACTIVITY, Kind, Watch

KIND = Kind("ConfigMap", "/api/v1", "configmaps")


def _obj(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}


async def test_gone_in_the_stream_or_as_the_answer_relists_and_pages_are_followed() -> None:
    lists: list[dict[str, str]] = []
    watches: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        if query.get("watch") != "true":
            lists.append(query)
            if len(lists) == 1:  # two pages
                return web.json_response({"metadata": {"resourceVersion": "5",
                                                       "continue": "p2"},
                                          "items": [_obj("a", "3")]})
            if len(lists) == 2:
                return web.json_response({"metadata": {"resourceVersion": "5"},
                                          "items": [_obj("b", "4")]})
            if len(lists) == 3:
                return web.json_response({"metadata": {"resourceVersion": "5"},
                                          "items": [_obj("a", "3"), _obj("b", "4")]})
            return web.json_response({"metadata": {"resourceVersion": "9"},
                                      "items": [_obj("a", "3"), _obj("c", "8")]})
        watches.append(query)
        if len(watches) == 1:  # 410 as an event in the stream
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "code": 410, "reason": "Expired"}}).encode() + b"\n")
            return response
        if len(watches) == 2:  # 410 as the answer
            return web.json_response({"kind": "Status", "code": 410}, status=410)
        response = web.StreamResponse()
        await response.prepare(request)
        event = {"type": "ADDED", "object": _obj("d", "10")}
        text = json.dumps(event).encode()
        await response.write(text[:20])  # a line split across chunks
        await response.write(text[20:] + b"\n")
        await asyncio.sleep(30)
        return response

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    api = ApiServer(loader=lambda: kopf.ConnectionInfo(
        server=str(server.make_url("")).rstrip("/")))
    seen: list[tuple[str | None, str]] = []
    listed_as: set[tuple[Any, Any]] = set()

    def handler(kind: str | None, obj: Mapping[str, Any]) -> None:
        seen.append((kind, obj["metadata"]["name"]))
        if kind is None:  # list items lack apiVersion and kind; Events on them need both
            listed_as.add((obj.get("apiVersion"), obj.get("kind")))

    relists: list[tuple[set[tuple[str, str]], str | None]] = []
    task = asyncio.create_task(Watch(
        api, KIND, "ns", handler,
        relisted=lambda keys, rv: relists.append((keys, rv))).run())
    try:
        for _ in range(200):
            if ("ADDED", "d") in seen:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.close()
        await server.close()
    assert seen == [(None, "a"), (None, "b"),  # the first LIST, both pages
                    (None, "a"), (None, "b"),  # 410 in the stream: listed again
                    (None, "a"), (None, "c"),  # 410 as the answer: and again
                    ("ADDED", "d")]
    # after each LIST, complete (both pages), its keys and version: what vanished
    # meanwhile is found from them, with no LIST of anything else
    assert relists == [({("ns", "a"), ("ns", "b")}, "5"), ({("ns", "a"), ("ns", "b")}, "5"),
                       ({("ns", "a"), ("ns", "c")}, "9")]
    assert lists[1]["continue"] == "p2"
    assert lists[1]["limit"] == "500"
    assert [w.get("resourceVersion") for w in watches] == ["5", "5", "9"]
    assert listed_as == {("v1", "ConfigMap")}
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)
    # the server's bookmark comes ~2 s before timeoutSeconds: within the inactivity limit
    assert all(int(w["timeoutSeconds"]) + 2 <= WATCH_INACTIVITY for w in watches)
