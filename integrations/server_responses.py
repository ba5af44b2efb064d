"""What the server answers: one completion's chunks as a JSON body or server-sent events.

Also what an answer may show (see the server's module docstring): a completion marked
``withheld`` (a ``--multi-user`` server, a request that names a user) carries no
profile-derived data, so that nothing in it tells a stored profile's weights, version
or reward model, nor whether the user exists.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .server_requests import RequestError

if TYPE_CHECKING:
    from langchain_core.messages import AIMessageChunk, BaseMessage
    from starlette.requests import Request

    from langchain_pad import PADChatModel

T = TypeVar("T")

WITHHELD: dict[str, Any] = {"profile": {"requested": "user_id", "withheld": True}}
"""The whole ``pad`` block of a withheld answer: the same whether the user's profile
was applied, missing, or unusable."""


@dataclass
class Completion:
    """One request, resolved: messages, call parameters, and what to send back."""

    id: str
    model: str
    messages: list[BaseMessage]
    kwargs: dict[str, Any]
    strict_user: bool
    """The request named ``pad.user_id`` on a single-tenant server: an unknown user is a
    404, whatever the policy."""
    stream: bool
    include_usage: bool
    return_rewards: bool
    withheld: bool = False
    """Show no profile-derived data (multi-user server, a request naming a user)."""
    guarded: bool = False
    """Answer as a multi-user server does: other users' data never shown, unknown and
    unusable profiles fall back (a keyed non-admin caller, or ``multi_user``)."""
    hide_weights: bool = False
    """Show neither the ``w_p`` applied nor the per-axis summary that gives it back (a
    multi-user server, a preference in words: the match may be another user's)."""
    created: int = field(default_factory=lambda: int(time.time()))


def _chunk_pad(chunk: AIMessageChunk) -> dict[str, Any]:
    """Per-token data of one chunk: its token ids and the PAD record (when guided)."""
    meta = chunk.response_metadata
    out: dict[str, Any] = {"token_ids": list(meta.get("token_ids", []))}
    for key in ("token_logprobs", "token_texts"):
        if key in meta:
            out[key] = list(meta[key])
    if isinstance(meta.get("pad"), dict):
        out.update(meta["pad"])
    return out


def _summary_pad(last: AIMessageChunk | None, completion: Completion) -> dict[str, Any]:
    """What steered the answer: axes, ``w_p``, ``beta``, profile (from the last chunk)."""
    if completion.withheld:
        return dict(WITHHELD)
    if last is None:
        return {}
    meta = last.response_metadata
    hidden = ("pad_weights", "pad_strengths", "pad_summary") if completion.hide_weights else ()
    return {
        key[4:]: value
        for key, value in meta.items()
        if key.startswith("pad_") and key not in hidden
    }


def _finish_reason(last: AIMessageChunk | None, called: bool = False) -> str:
    if called:
        return "tool_calls"
    reason = last.response_metadata.get("finish_reason") if last is not None else None
    return "length" if reason == "length" else "stop"


def _wire_calls(chunks: list[Any]) -> list[dict[str, Any]]:
    """LangChain ``tool_call_chunks`` as OpenAI's streamed ``delta.tool_calls``.

    As OpenAI sends them: a call's first delta carries its id, type and name (and the
    arguments so far, often ""), later ones only ``index`` and an arguments fragment;
    the client joins the fragments of one index.
    """
    out: list[dict[str, Any]] = []
    for c in chunks:
        function: dict[str, Any] = {"arguments": c.get("args") or ""}
        delta: dict[str, Any] = {"index": c.get("index") or 0}
        if c.get("id") is not None:
            delta.update(id=c["id"], type="function")
        if c.get("name") is not None:
            function = {"name": c["name"], **function}
        out.append({**delta, "function": function})
    return out


def _whole_calls(chunks: list[Any]) -> list[dict[str, Any]]:
    """A whole answer's ``message.tool_calls``: each call's streamed chunks joined."""
    calls: dict[int, dict[str, Any]] = {}
    for c in chunks:
        call = calls.setdefault(
            c.get("index") or 0,
            {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
        )
        call["id"] = call["id"] or c.get("id")
        call["function"]["name"] = call["function"]["name"] or c.get("name")
        call["function"]["arguments"] += c.get("args") or ""
    return [calls[index] for index in sorted(calls)]


def _usage(last: AIMessageChunk | None) -> dict[str, int]:
    usage = last.usage_metadata if last is not None else None
    if not usage:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {
        "prompt_tokens": usage["input_tokens"],
        "completion_tokens": usage["output_tokens"],
        "total_tokens": usage["total_tokens"],
    }


def _sse(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def library_error(exc: Exception, *, multi_user: bool = False) -> RequestError:
    """Errors PADChatModel raises for a bad request, as 4xx answers with its message.

    On a multi-user server a profile mismatch (a matched profile learned for another
    reward model) is told without the profile's user id and version.
    """
    from langchain_pad.engine import QueueTimeoutError
    from langchain_pad.preferences import ProfileMismatchError
    from langchain_pad.profiles import UnknownProfileError

    if isinstance(exc, UnknownProfileError):
        return RequestError(404, str(exc), code="profile_not_found")
    if isinstance(exc, ProfileMismatchError) and multi_user:
        return RequestError(
            409,
            "a stored profile this request matched was learned for another reward model "
            "than the one this server decodes with; the server's operator must re-learn "
            "or remove it. Send pad.weights meanwhile.",
            code="profile_mismatch",
        )
    if isinstance(exc, QueueTimeoutError):
        return RequestError(
            503,
            str(exc),
            code="queue_timeout",
            headers={"Retry-After": str(max(1, round(exc.queue_timeout)))},
        )
    if isinstance(exc, TimeoutError):
        return RequestError(504, str(exc) or "generation timed out", code="timeout")
    if isinstance(exc, ValueError | TypeError):
        return RequestError(400, str(exc))
    return RequestError(500, f"{type(exc).__name__}: {exc}")


async def unless_disconnected(request: Request, work: Awaitable[T], poll: float) -> T | None:
    """``work``'s result, or None once the client hung up (``work`` is then cancelled).

    A non-streaming answer is only sent at the end, so nothing else notices a client
    that gave up: without this its row would decode to ``max_tokens`` for nobody.
    Cancelling the task raises inside the chat model's stream, whose ``finally``
    cancels the row, which leaves its batch at the next decoding step.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task
                return None
    finally:
        if not task.done():  # this handler was cancelled itself (server shutdown)
            task.cancel()


class Run:
    """One completion's stream of chunks, started before the response is answered.

    The first chunk is awaited up front, so that errors of the request itself (an
    unknown axis, a prompt too long for the context) become a 4xx answer instead of
    a broken 200 stream.
    """

    def __init__(
        self,
        llm: PADChatModel,
        completion: Completion,
        *,
        multi_user: bool,
        on_chunk: Callable[[AIMessageChunk], None] | None = None,
        on_first: Callable[[float], None] | None = None,
    ) -> None:
        self.completion = completion
        self.multi_user = multi_user
        self.chunks: AsyncIterator[AIMessageChunk] = llm.astream(
            completion.messages, **completion.kwargs
        )
        self.first: AIMessageChunk | None = None
        self.on_chunk = on_chunk
        """Sees every chunk as it arrives (the server's metrics)."""
        self.on_first = on_first
        """Gets the seconds from this run's creation to its first chunk."""
        self.created = time.monotonic()
        self.generated = 0
        """Tokens received so far (what a cancelled answer cost)."""
        self.prompt_tokens: int | None = None
        """The prompt's tokens, once the last chunk has told them."""

    def _seen(self, chunk: AIMessageChunk) -> None:
        self.generated += len(chunk.response_metadata.get("token_ids", ()))
        if chunk.usage_metadata:
            self.prompt_tokens = chunk.usage_metadata["input_tokens"]
        if self.on_chunk is not None:
            self.on_chunk(chunk)

    async def start(self) -> bool:
        """Await the first chunk (True once it is there, or the answer is empty)."""
        try:
            self.first = await anext(self.chunks)
        except StopAsyncIteration:
            self.first = None
        except Exception as exc:
            await self.close()
            raise library_error(exc, multi_user=self.multi_user) from exc
        if self.on_first is not None:
            self.on_first(time.monotonic() - self.created)
        if self.first is not None:
            self._seen(self.first)
        return True

    async def close(self) -> None:
        close = getattr(self.chunks, "aclose", None)
        if close is not None:
            await close()

    async def all(self) -> AsyncIterator[AIMessageChunk]:
        try:
            if self.first is not None:
                yield self.first
                async for chunk in self.chunks:
                    self._seen(chunk)
                    yield chunk
        finally:
            await self.close()  # a client that went away cancels its row

    async def answer(self) -> dict[str, Any]:
        """The whole non-streaming answer (start included: it is cancellable as one)."""
        await self.start()
        try:
            return await self.respond()
        except RequestError:
            raise
        except Exception as exc:
            raise library_error(exc, multi_user=self.multi_user) from exc

    async def respond(self) -> dict[str, Any]:
        completion = self.completion
        text: list[str] = []
        tokens: dict[str, list[Any]] = {}
        last: AIMessageChunk | None = None
        calls: list[Any] = []
        async for chunk in self.all():
            text.append(str(chunk.content))
            calls.extend(chunk.tool_call_chunks)
            last = chunk
            if completion.return_rewards:
                for key, values in _chunk_pad(chunk).items():
                    tokens.setdefault(key, []).extend(values)
        body: dict[str, Any] = {
            "id": completion.id,
            "object": "chat.completion",
            "created": completion.created,
            "model": completion.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(text) if not calls else ("".join(text) or None),
                        **({"tool_calls": _whole_calls(calls)} if calls else {}),
                    },
                    "finish_reason": _finish_reason(last, bool(calls)),
                    "logprobs": None,
                }
            ],
            "usage": _usage(last),
        }
        pad = _summary_pad(last, completion)
        if completion.return_rewards:
            pad["tokens"] = tokens
        if pad:
            body["pad"] = pad
        return body

    async def events(self) -> AsyncIterator[bytes]:
        completion = self.completion

        def frame(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
            return {
                "id": completion.id,
                "object": "chat.completion.chunk",
                "created": completion.created,
                "model": completion.model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
                **extra,
            }

        yield _sse(frame({"role": "assistant", "content": ""}))
        last: AIMessageChunk | None = None
        called = False
        try:
            async for chunk in self.all():
                last = chunk
                text = str(chunk.content)
                if chunk.tool_call_chunks:
                    called = True
                    yield _sse(frame({"tool_calls": _wire_calls(chunk.tool_call_chunks)}))
                if completion.return_rewards:
                    yield _sse(frame({"content": text}, pad=_chunk_pad(chunk)))
                elif text:
                    yield _sse(frame({"content": text}))
        except Exception as exc:
            # the 200 header is sent: report the failure as an event (OpenAI's client
            # raises it as an APIError) instead of cutting the connection
            yield _sse(library_error(exc, multi_user=self.multi_user).body())
            return
        summary = _summary_pad(last, completion)
        finish = _finish_reason(last, called)
        yield _sse(frame({}, finish, **({"pad": summary} if summary else {})))
        if completion.include_usage:
            usage_frame = frame({})
            usage_frame["choices"] = []
            usage_frame["usage"] = _usage(last)
            yield _sse(usage_frame)
        yield _sse("[DONE]")
