"""What Ray Serve's HTTP proxy answers when the replica under a request dies.

Serve replaces a dead replica, but the requests it held fail in the proxy with a bare
``500 Internal Server Error`` (a plain-text body, no reason), and Serve retries none
of them. :class:`ReplicaLossMiddleware` runs inside the proxy (Serve's
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` hook, set by
:mod:`~langchain_pad.integrations.ray_serve` when it starts Serve) and turns that into
what a client can act on:

- A request that **writes nothing** (``POST /v1/chat/completions``, every ``GET``)
  and got no answer yet is sent again, to another replica (Serve routes around the dead
  one), up to ``attempts`` times. A completion is a read of the profile store, so
  running it twice changes nothing.
- Any other request (``POST /v1/pad/feedback``: a profile write) is not repeated: the
  write is one PostgreSQL transaction, committed in full or not at all, but the proxy
  cannot tell which. It gets a ``503`` in the OpenAI error format that says so, with
  ``Retry-After``.
- A stream cut after it started cannot be replayed (the client holds half an answer):
  it ends with an SSE ``error`` event in the server's error format, so clients raise
  instead of taking the half answer as complete.

Detection needs no parsing: a replica's own errors are real responses (they carry the
``x-pad-replica`` header); the proxy finishing a request without starting a response,
or ending a started body without its last chunk, means the replica is gone. A request
whose client hung up is neither repeated nor answered.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ReplicaLossMiddleware", "middlewares"]

_READ_ONLY_POSTS = frozenset({"/v1/chat/completions"})


def _error_body(message: str, code: str) -> bytes:
    error = {"message": message, "type": "server_error", "param": None, "code": code}
    return json.dumps({"error": error}).encode()


class ReplicaLossMiddleware:
    """Pure ASGI middleware around Serve's proxy app (see the module docstring)."""

    def __init__(self, app: ASGIApp, attempts: int = 3, backoff: float = 0.5) -> None:
        self.app = app
        self.attempts = attempts
        self.backoff = backoff

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", "GET"), scope.get("path", "")
        repeatable = method in ("GET", "HEAD") or (method == "POST" and path in _READ_ONLY_POSTS)
        request = _Replay(receive)
        response = _Watch(send)
        for attempt in range(self.attempts if repeatable else 1):
            if attempt:
                await asyncio.sleep(self.backoff * attempt)
            await self.app(scope, request.receive, response.send)
            if response.started or request.disconnected:
                break
            request.rewind()
        if request.disconnected:
            return  # nobody to answer
        if not response.started:
            await self._unavailable(send, repeatable)
        elif not response.finished:
            await self._cut(send, response)

    async def _unavailable(self, send: Send, repeatable: bool) -> None:
        if repeatable:
            message = (
                f"no replica could answer this request: the replicas it was sent to "
                f"({self.attempts} tries) stopped before answering (Serve replaces "
                "them); it writes nothing, so send it again"
            )
        else:
            message = (
                "the replica handling this request stopped before answering (Serve "
                "replaces it). A profile write is one transaction: it was recorded in "
                "full or not at all; read GET /v1/pad/profile to see which before "
                "sending it again"
            )
        body = _error_body(message, "replica_lost")
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _cut(self, send: Send, response: _Watch) -> None:
        if response.event_stream:
            message = (
                "the replica decoding this stream stopped mid-answer (Serve replaces "
                "it); the text so far is incomplete: send the request again"
            )
            event = b"data: " + _error_body(message, "replica_lost") + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": False})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Replay:
    """The request's messages, recorded so that a second attempt reads the same body."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._recorded: list[Message] = []
        self._position = 0
        self.disconnected = False

    async def receive(self) -> Message:
        if self._position < len(self._recorded):
            message = self._recorded[self._position]
            self._position += 1
            return message
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected = True
        else:
            self._recorded.append(message)
            self._position += 1
        return message

    def rewind(self) -> None:
        self._position = 0


class _Watch:
    """Whether a response started, finished, and whether it is a server-sent stream."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.finished = False
        self.event_stream = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            headers: Any = message.get("headers", [])
            self.event_stream = any(
                k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                for k, v in headers
            )
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)


def middlewares() -> list[Middleware]:
    """Serve's proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    return [Middleware(ReplicaLossMiddleware)]
