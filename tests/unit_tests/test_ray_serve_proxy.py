"""The proxy hook's logic, over stand-ins for Serve's proxy app (an ASGI callable that
loses its replica: returns without a response, or ends a started body early)."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("starlette")

from langchain_pad.integrations.ray_serve_proxy import ReplicaLossMiddleware, middlewares


class FlakyProxy:
    """Loses the replica on the first ``losses`` calls, then answers with the body."""

    def __init__(self, losses: int, *, stream_cut: bool = False) -> None:
        self.losses = losses
        self.stream_cut = stream_cut
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.bodies.append(message.get("body", b""))
        if len(self.bodies) <= self.losses:
            if self.stream_cut:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")],
                    }
                )
                await send(
                    {"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True}
                )
            return  # the replica died: Serve's proxy sends nothing more
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answer", "more_body": False})


def call(app, method, path, body=b'{"messages": []}', disconnect=False):
    sent = []

    async def receive():
        if disconnect:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent


def test_a_lost_completion_is_sent_again_with_its_body():
    proxy = FlakyProxy(losses=2)
    sent = call(ReplicaLossMiddleware(proxy, backoff=0), "POST", "/v1/chat/completions")
    assert proxy.bodies == [b'{"messages": []}'] * 3  # the same body each time
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"answer"


def test_a_completion_lost_on_every_try_is_a_503_that_says_why():
    proxy = FlakyProxy(losses=5)
    sent = call(ReplicaLossMiddleware(proxy, attempts=3, backoff=0), "POST", "/v1/chat/completions")
    assert len(proxy.bodies) == 3
    assert sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "replica_lost" and "writes nothing" in error["message"]


def test_a_lost_write_is_not_repeated_and_says_it_is_all_or_nothing():
    proxy = FlakyProxy(losses=1)
    sent = call(ReplicaLossMiddleware(proxy, backoff=0), "POST", "/v1/pad/feedback")
    assert len(proxy.bodies) == 1
    assert sent[0]["status"] == 503
    message = json.loads(sent[1]["body"])["error"]["message"]
    assert "in full or not at all" in message and "GET /v1/pad/profile" in message


def test_a_cut_stream_ends_with_an_error_event():
    proxy = FlakyProxy(losses=1, stream_cut=True)
    sent = call(ReplicaLossMiddleware(proxy, backoff=0), "POST", "/v1/chat/completions")
    assert len(proxy.bodies) == 1  # half an answer was sent: not replayed
    last = sent[-1]
    assert last["more_body"] is False
    event = json.loads(last["body"].removeprefix(b"data: "))
    assert event["error"]["code"] == "replica_lost"


def test_a_client_that_hung_up_is_neither_retried_nor_answered():
    proxy = FlakyProxy(losses=5)
    sent = call(ReplicaLossMiddleware(proxy, backoff=0), "GET", "/health", disconnect=True)
    assert len(proxy.bodies) == 1 and sent == []


def test_the_serve_callback_returns_starlette_middleware():
    from starlette.middleware import Middleware

    [entry] = middlewares()
    assert isinstance(entry, Middleware) and entry.cls is ReplicaLossMiddleware
