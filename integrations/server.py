"""An OpenAI-compatible HTTP server over :class:`~langchain_pad.PADChatModel`.

```bash
langchain-pad serve --port 8000 --reward-model path/to/persrm
```

```python
from openai import OpenAI

client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
reply = client.chat.completions.create(
    model="smollm2-135m-instruct",
    messages=[{"role": "user", "content": "Explain tides."}],
    temperature=0,
    extra_body={"pad": {"weights": {"expertise": -1.0}, "return_rewards": True}},
)
```

Endpoints: ``POST /v1/chat/completions`` (JSON, or server-sent events with
``"stream": true``), ``GET /v1/models``, ``GET /health`` and ``GET /v1/pad/stats`` (the
decoding thread's waves, to see batching at work).

Personalization per request, decided by the library's one resolver
(``langchain_pad.preferences``), first match wins: ``pad.weights`` (``w_p`` by axis name
or as a vector) > ``pad.user_id`` or the standard ``user`` field (a profile in the
server's profile store) > ``pad.preference`` (a preference in words, matched against the
store's known profiles, or the reward model's anchor poles when the server has no store)
> none. ``pad.beta`` scales the reward; ``pad.return_rewards`` adds the per-token PAD data
to every chunk (streaming) or to the response.

Concurrency: every request is one ``PADChatModel.astream`` on the server's event loop;
the decoding itself runs on the server's :class:`~langchain_pad.runtime.PADRuntime`,
whose one decoding thread gathers the requests waiting within ``batch_window`` seconds
into one batch, plain and personalized rows alike, each row with its own ``w_p`` (one
decoding loop serving many users).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "langchain_pad.integrations.server needs the server extra: "
        "pip install 'langchain-pad[server]'"
    ) from exc

if TYPE_CHECKING:
    from langchain_core.messages import AIMessageChunk, BaseMessage

    from langchain_pad import PADChatModel
    from langchain_pad.runtime import PADRuntime

__all__ = [
    "ChatCompletionRequest",
    "PadOptions",
    "ServerSettings",
    "create_app",
    "serve",
]


# ---------------------------------------------------------------------- settings


@dataclass
class ServerSettings:
    """What one server process serves, and its limits."""

    model: str = "smollm2-135m-instruct"
    """Model name, Hugging Face id or local directory (as ``PADChatModel(model=...)``)."""
    reward_model: str | None = "default"
    """PersRM directory, ``"default"`` (the shipped one) or None (no personalization)."""
    served_model_name: str | None = None
    """Name clients pass as ``model``; defaults to ``model``."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    default_max_tokens: int = 256
    """``max_tokens`` of a request that names none (capped by ``max_tokens_limit``)."""
    max_tokens_limit: int = 1024
    """Largest ``max_tokens`` a request may ask for; more is a 400 error."""
    max_request_bytes: int = 1 << 20
    """Largest request body; more is a 413 error."""
    max_messages: int = 256
    max_batch_size: int = 32
    batch_window: float = 0.02
    """Seconds a wave waits after its first request for others to join its batch."""
    max_waves: int = 4
    """Waves decoded at once: a request arriving while a batch runs starts its own wave
    at once (the waves take decoding steps in turn) instead of waiting for it to end."""
    request_timeout: float | None = 600.0
    """Seconds one completion may take before it fails (504)."""
    profile_store: Any = None
    """A ``langchain_pad.profiles.ProfileStore``: resolves ``user`` and ``pad`` profiles."""
    unknown_user: Literal["fallback", "error"] = "fallback"
    """A ``user`` with no stored profile: fall back (to ``pad.preference`` or no
    personalization), or answer 404. An explicit ``pad.user_id`` always gets 404."""
    runtime: Any = None
    """A :class:`~langchain_pad.runtime.PADRuntime` to serve on; None builds one from
    ``model``, ``dtype`` and the batching settings above."""


# ---------------------------------------------------------------------- request schema


class PadOptions(BaseModel):
    """The ``pad`` object of a request: who the answer is for and what to return."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] | list[float] | None = None
    """``w_p`` by axis name, or one weight per axis in the reward model's order."""
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    preference: str | None = Field(default=None, min_length=1, max_length=4000)
    beta: float | None = Field(default=None, gt=0)
    return_rewards: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat-completions request this server honours.

    Fields OpenAI defines that would change the answer but are not supported here
    (tools, ``n > 1``, log-probabilities, penalties, JSON mode) are refused with 400,
    never silently ignored; other unknown fields are ignored.
    """

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    user: str | None = Field(default=None, max_length=256)
    pad: PadOptions | None = None


class RequestError(Exception):
    """An error answered to the client as OpenAI's ``{"error": {...}}`` body."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code,
            }
        }


_UNSUPPORTED: dict[str, str] = {
    "tools": "tool calling is not supported by this server",
    "functions": "function calling is not supported by this server",
    "tool_choice": "tool calling is not supported by this server",
    "logprobs": "log-probabilities are not returned; use pad.return_rewards for per-token data",
    "top_logprobs": "log-probabilities are not returned",
    "logit_bias": "logit_bias is not supported",
    "frequency_penalty": "frequency_penalty is not supported",
    "presence_penalty": "presence_penalty is not supported",
    "audio": "audio output is not supported",
}


def _check_unsupported(request: ChatCompletionRequest) -> None:
    extra = request.model_extra or {}
    for key, reason in _UNSUPPORTED.items():
        value = extra.get(key)
        if value in (None, False, 0, 0.0, [], {}):
            continue
        raise RequestError(400, f"{key}: {reason}.", param=key, code="unsupported_parameter")
    response_format = extra.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise RequestError(
            400,
            "response_format: only {'type': 'text'} is supported.",
            param="response_format",
            code="unsupported_parameter",
        )
    if request.n not in (None, 1):
        raise RequestError(
            400,
            f"n={request.n}: this server returns one choice per request; send n "
            "requests instead (they are batched together).",
            param="n",
            code="unsupported_parameter",
        )


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise RequestError(
                400,
                f"messages[{index}].content: only text parts are supported, got {part.type!r}.",
                param=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "".join(texts)


def to_langchain_messages(messages: list[ChatMessage]) -> list[BaseMessage]:
    """OpenAI chat messages -> LangChain messages (``developer`` counts as ``system``)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    out: list[BaseMessage] = []
    for index, message in enumerate(messages):
        text = _text(message, index)
        if message.role in ("system", "developer"):
            out.append(SystemMessage(text))
        elif message.role == "user":
            out.append(HumanMessage(text))
        elif message.role == "assistant":
            out.append(AIMessage(text))
        else:
            raise RequestError(
                400,
                f"messages[{index}].role {message.role!r} is not supported; use system, "
                "developer, user or assistant.",
                param=f"messages[{index}].role",
            )
    return out


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# ---------------------------------------------------------------------- one completion


@dataclass
class _Completion:
    """One request, resolved: messages, call parameters, and what to send back."""

    id: str
    model: str
    messages: list[BaseMessage]
    kwargs: dict[str, Any]
    strict_user: bool
    """The request named ``pad.user_id``: an unknown user is a 404, whatever the policy."""
    stream: bool
    include_usage: bool
    return_rewards: bool
    created: int = field(default_factory=lambda: int(time.time()))


class _Server:
    """The app's state: the chat model, the limits, and how requests become calls."""

    def __init__(self, settings: ServerSettings, llm: PADChatModel | None = None) -> None:
        from langchain_pad import PADChatModel
        from langchain_pad.runtime import PADRuntime

        self.settings = settings
        if llm is None:
            runtime = settings.runtime or PADRuntime(
                settings.model,
                dtype=settings.dtype,
                max_batch_size=settings.max_batch_size,
                batch_window=settings.batch_window,
                max_waves=settings.max_waves,
            )
            llm = PADChatModel(
                runtime=runtime,
                reward_model=settings.reward_model,
                timeout=settings.request_timeout,
                profile_store=settings.profile_store,
            )
        self.runtime: PADRuntime = llm.get_runtime()
        self.llm: PADChatModel = llm.model_copy(update={"unknown_user": settings.unknown_user})
        # an explicit pad.user_id names a profile the client expects to exist: always 404
        self.strict_llm: PADChatModel = llm.model_copy(update={"unknown_user": "error"})
        self.started = int(time.time())
        self.model_id = settings.served_model_name or self.llm.model_name

    def warm_up(self) -> None:
        """Load the weights now (not on the first request); set the batching policy."""
        runtime = self.runtime
        runtime.batch_window = self.settings.batch_window
        runtime.max_waves = self.settings.max_waves
        runtime.scheduler  # noqa: B018 - builds the engine and loads the weights

    async def read(self, request: Request) -> _Completion:
        body = await self._body(request)
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RequestError(400, "the request body must be a JSON object.")
        try:
            parsed = ChatCompletionRequest.model_validate(data)
        except ValidationError as exc:
            raise RequestError(422, _validation_message(exc)) from None
        # profiles are looked up by the chat model, off the event loop, when the call starts
        return self.resolve(parsed)

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(
                413, f"the request body is {declared} bytes; this server accepts {limit} at most."
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(
                    413, f"the request body exceeds this server's limit of {limit} bytes."
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def resolve(self, request: ChatCompletionRequest) -> _Completion:
        settings = self.settings
        _check_unsupported(request)
        if request.model is not None and request.model != self.model_id:
            raise RequestError(
                404,
                f"The model {request.model!r} does not exist on this server; "
                f"it serves {[self.model_id]}.",
                param="model",
                code="model_not_found",
            )
        if len(request.messages) > settings.max_messages:
            raise RequestError(
                400,
                f"{len(request.messages)} messages; this server accepts {settings.max_messages}.",
                param="messages",
            )
        max_tokens = request.max_completion_tokens or request.max_tokens
        if max_tokens is not None and max_tokens > settings.max_tokens_limit:
            raise RequestError(
                400,
                f"max_tokens={max_tokens} exceeds this server's limit of "
                f"{settings.max_tokens_limit} tokens.",
                param="max_tokens",
            )
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens or min(settings.default_max_tokens, settings.max_tokens_limit)
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.seed is not None:
            kwargs["seed"] = request.seed
        stop = [request.stop] if isinstance(request.stop, str) else request.stop
        if stop:
            if len(stop) > 16 or any(not s for s in stop):
                raise RequestError(400, "stop: up to 16 non-empty strings.", param="stop")
            kwargs["stop"] = stop
        kwargs.update(self._personalization(request))
        pad = request.pad or PadOptions()
        return _Completion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            model=self.model_id,
            messages=to_langchain_messages(request.messages),
            kwargs=kwargs,
            strict_user=pad.user_id is not None,
            stream=request.stream,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            return_rewards=pad.return_rewards,
        )

    def _personalization(self, request: ChatCompletionRequest) -> dict[str, Any]:
        """The request's preference as call parameters; the resolver decides what wins."""
        pad = request.pad or PadOptions()
        out: dict[str, Any] = {}
        if pad.weights is not None:
            out["weights"] = pad.weights
        if pad.beta is not None:
            out["beta"] = pad.beta
        if pad.preference is not None:
            out["preference"] = pad.preference
        user_id = pad.user_id
        if user_id is None and request.user and self.llm.profile_store is not None:
            user_id = request.user  # OpenAI's `user` names a profile only where one is kept
        if user_id is not None:
            if self.llm.profile_store is None:
                raise RequestError(
                    400,
                    "pad.user_id is looked up in a profile store, but this server has none "
                    "(start it with --profiles PATH); send pad.weights or pad.preference.",
                    param="pad.user_id",
                )
            out["user_id"] = user_id
        return out


# ---------------------------------------------------------------------- responses


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


def _summary_pad(last: AIMessageChunk) -> dict[str, Any]:
    """What steered the answer: axes, ``w_p``, ``beta``, profile (from the last chunk)."""
    meta = last.response_metadata
    return {key[4:]: value for key, value in meta.items() if key.startswith("pad_")}


def _finish_reason(last: AIMessageChunk | None) -> str:
    reason = last.response_metadata.get("finish_reason") if last is not None else None
    return "length" if reason == "length" else "stop"


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


def _library_error(exc: Exception) -> RequestError:
    """Errors PADChatModel raises for a bad request, as 4xx answers with its message."""
    from langchain_pad.profiles import UnknownProfileError

    if isinstance(exc, UnknownProfileError):
        return RequestError(404, str(exc), code="profile_not_found")
    if isinstance(exc, TimeoutError):
        return RequestError(504, str(exc) or "generation timed out", code="timeout")
    if isinstance(exc, ValueError | TypeError):
        return RequestError(400, str(exc))
    return RequestError(500, f"{type(exc).__name__}: {exc}")


class _Run:
    """One completion's stream of chunks, started before the response is answered.

    The first chunk is awaited up front, so that errors of the request itself (an
    unknown axis, a prompt too long for the context) become a 4xx answer instead of
    a broken 200 stream.
    """

    def __init__(self, server: _Server, completion: _Completion) -> None:
        self.server = server
        self.completion = completion
        llm = server.strict_llm if completion.strict_user else server.llm
        self.chunks: AsyncIterator[AIMessageChunk] = llm.astream(
            completion.messages, **completion.kwargs
        )
        self.first: AIMessageChunk | None = None

    async def start(self) -> None:
        try:
            self.first = await anext(self.chunks)
        except StopAsyncIteration:
            self.first = None
        except Exception as exc:
            await self.close()
            raise _library_error(exc) from exc

    async def close(self) -> None:
        close = getattr(self.chunks, "aclose", None)
        if close is not None:
            await close()

    async def all(self) -> AsyncIterator[AIMessageChunk]:
        try:
            if self.first is not None:
                yield self.first
                async for chunk in self.chunks:
                    yield chunk
        finally:
            await self.close()  # a client that went away cancels its row

    async def respond(self) -> dict[str, Any]:
        completion = self.completion
        text: list[str] = []
        tokens: dict[str, list[Any]] = {}
        last: AIMessageChunk | None = None
        async for chunk in self.all():
            text.append(str(chunk.content))
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
                    "message": {"role": "assistant", "content": "".join(text)},
                    "finish_reason": _finish_reason(last),
                    "logprobs": None,
                }
            ],
            "usage": _usage(last),
        }
        pad = _summary_pad(last) if last is not None else {}
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
        try:
            async for chunk in self.all():
                last = chunk
                text = str(chunk.content)
                if completion.return_rewards:
                    yield _sse(frame({"content": text}, pad=_chunk_pad(chunk)))
                elif text:
                    yield _sse(frame({"content": text}))
        except Exception as exc:
            # the 200 header is sent: report the failure as an event (OpenAI's client
            # raises it as an APIError) instead of cutting the connection
            yield _sse(_library_error(exc).body())
            return
        summary = {"pad": _summary_pad(last)} if last is not None and _summary_pad(last) else {}
        yield _sse(frame({}, _finish_reason(last), **summary))
        if completion.include_usage:
            usage_frame = frame({})
            usage_frame["choices"] = []
            usage_frame["usage"] = _usage(last)
            yield _sse(usage_frame)
        yield _sse("[DONE]")


# ---------------------------------------------------------------------- the app


def create_app(
    settings: ServerSettings | None = None, *, llm: PADChatModel | None = None
) -> FastAPI:
    """The FastAPI application; ``uvicorn.run(create_app(...))`` serves it.

    ``llm`` serves a ready-made :class:`~langchain_pad.PADChatModel` (its model, reward
    model and profile store) instead of one built from ``settings``; the limits and the
    batch window still come from ``settings``.
    """
    from contextlib import asynccontextmanager

    server = _Server(settings or ServerSettings(), llm)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(server.warm_up)
        yield

    app = FastAPI(title="langchain-pad", version="0.1.0", lifespan=lifespan)
    app.state.pad = server

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, exc: RequestError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.model_id}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": server.model_id,
                    "object": "model",
                    "created": server.started,
                    "owned_by": "langchain-pad",
                }
            ],
        }

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != server.model_id:
            raise RequestError(
                404, f"The model {model_id!r} does not exist.", code="model_not_found"
            )
        return {
            "id": model_id,
            "object": "model",
            "created": server.started,
            "owned_by": "langchain-pad",
        }

    @app.get("/v1/pad/stats")
    async def stats() -> dict[str, Any]:
        return server.runtime.stats()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        completion = await server.read(request)
        run = _Run(server, completion)
        await run.start()
        if not completion.stream:
            try:
                return JSONResponse(await run.respond())
            except Exception as exc:
                raise _library_error(exc) from exc
        return StreamingResponse(
            run.events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def serve(
    settings: ServerSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> None:
    """Run the server in this process until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
