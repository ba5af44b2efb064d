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
``"stream": true``), ``GET /v1/models``, ``GET /health`` (the process, and the profile
store's last integrity check) and ``GET /v1/pad/stats`` (the decoding thread's waves,
to see batching at work).

Personalization per request, decided by the library's one resolver
(``langchain_pad.preferences``), first match wins: ``pad.weights`` (``w_p`` by axis name
or as a vector) > ``pad.user_id`` or the standard ``user`` field (a profile in the
server's profile store) > ``pad.preference`` (a preference in words, matched against the
store's known profiles, or the reward model's anchor poles when the server has no store)
> none. ``pad.beta`` scales the reward; ``pad.return_rewards`` adds the per-token PAD data
to every chunk (streaming) or to the response.

What a response may reveal. There are no API keys yet, so the server cannot tell one
client from another:

- **By default the server is local and single-tenant**: whoever can reach it owns every
  profile in its store, and responses show everything: ``pad.profile`` names the users a
  ``pad.preference`` matched (ids, versions, similarities), a ``user`` / ``pad.user_id``
  answer shows the profile's version, reward-model id and weights, and an explicit
  ``pad.user_id`` without a profile is a 404.
- **With** ``multi_user=True`` (``serve --multi-user``) responses never name another user:
  a ``pad.preference`` match lists only the reward model's anchors in
  ``pad.profile.matches`` / ``used``, and its answer shows neither the ``w_p`` applied
  (``pad.weights``) nor the per-axis reward summary, and refuses ``pad.return_rewards``:
  the nearest known preference may be another user's, whose weights these would be.
  A request that names a user (``user`` or ``pad.user_id``, without ``pad.weights``)
  gets no profile-derived data at all: its ``pad`` block is
  exactly ``{"profile": {"requested": "user_id", "withheld": true}}`` (no weights, beta,
  summary, version or reward-model id, since anyone may send any id), and
  ``pad.return_rewards`` is refused for it (per-token rewards and features give the
  weights back). An unknown user id falls back silently (to ``pad.preference``, else no
  personalization), and so does a stored profile the server cannot use (learned for
  another reward model, or with weights out of this one's range): status and body are
  the same for an unknown id as for an unusable one, and an explicit ``pad.user_id`` is
  never a 404. A ``pad.preference`` that matches an unusable profile is a 409 that names
  no one. ``/health`` gives the number of the store's findings, not their text. What
  stays observable: the answer's text differs when a profile is applied; only keys (a
  later issue) can stop one client from asking with another's id.

Limits: bodies over ``max_request_bytes`` are a 413, a body not received within
``body_timeout`` seconds a 408; bad parameters are a 400 that names the parameter and
the form it accepts (see ``server_requests``). A non-streaming request whose client
hangs up stops decoding, as a stream does.

Concurrency: every request is one ``PADChatModel.astream`` on the server's event loop;
the decoding itself runs on the server's :class:`~langchain_pad.runtime.PADRuntime`,
whose one decoding thread gathers the requests waiting within ``batch_window`` seconds
into one batch, plain and personalized rows alike, each row with its own ``w_p`` (one
decoding loop serving many users).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "langchain_pad.integrations.server needs the server extra: "
        "pip install 'langchain-pad[server]'"
    ) from exc

from .server_requests import (
    ChatCompletionRequest,
    ChatMessage,
    PadOptions,
    RequestError,
    check_unsupported,
    parse_body,
    to_langchain_messages,
    tool_options,
    validate_request,
)
from .server_responses import Completion, Run, unless_disconnected
from .server_store import StoreHealth, UsableProfiles

if TYPE_CHECKING:
    from langchain_pad import PADChatModel
    from langchain_pad.profiles import RewardModelRef
    from langchain_pad.runtime import PADRuntime

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "PadOptions",
    "RequestError",
    "ServerSettings",
    "create_app",
    "serve",
    "to_langchain_messages",
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
    token_budget: int | None = 32768
    """Prompt + new tokens decoded at once across the waves; long prompts beyond it
    queue (they are answered when room frees) instead of exhausting memory."""
    request_timeout: float | None = 600.0
    """Seconds one completion may take before it fails (504)."""
    profile_store: Any = None
    """A ``langchain_pad.profiles.ProfileStore``: resolves ``user`` and ``pad`` profiles."""
    unknown_user: Literal["fallback", "error"] = "fallback"
    """A ``user`` with no stored profile: fall back (to ``pad.preference`` or no
    personalization), or answer 404. An explicit ``pad.user_id`` gets 404 on a
    single-tenant server; with ``multi_user`` every unknown user falls back."""
    multi_user: bool = False
    """Responses never name other users nor show a stored profile's data (see the module
    docstring); False: a local, single-tenant server that shows everything."""
    body_timeout: float = 10.0
    """Seconds the whole request body may take to arrive; slower is a 408, so a client
    that declares a body and never sends it cannot hold a connection."""
    disconnect_poll: float = 0.1
    """Seconds between checks that a non-streaming request's client is still there."""
    health_interval: float = 30.0
    """Seconds ``/health`` reuses the store's last integrity check before running a new
    one in the background (``/health`` itself never waits for it; the first check runs
    at start-up)."""
    runtime: Any = None
    """A :class:`~langchain_pad.runtime.PADRuntime` to serve on; None builds one from
    ``model``, ``dtype`` and the batching settings above."""


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
                token_budget=settings.token_budget,
            )
            llm = PADChatModel(
                runtime=runtime,
                reward_model=settings.reward_model,
                timeout=settings.request_timeout,
                profile_store=settings.profile_store,
            )
        self.runtime: PADRuntime = llm.get_runtime()
        self._served_reward_model: str | None = llm.reward_model
        store = llm.profile_store
        self.store_health = (
            None
            if store is None
            else StoreHealth(
                store, interval=settings.health_interval, reveal=not settings.multi_user
            )
        )
        if settings.multi_user:
            if settings.unknown_user == "error":
                raise ValueError(
                    "multi_user=True answers unknown users by falling back (a 404 would tell "
                    "which user ids exist): leave unknown_user at 'fallback'."
                )
            view = None if store is None else UsableProfiles(store, self._reward_model_ref)
            self.llm: PADChatModel = llm.model_copy(
                update={
                    "unknown_user": "fallback",
                    "reveal_matched_users": False,
                    "profile_store": view,
                }
            )
            self.strict_llm: PADChatModel = self.llm
        else:
            self.llm = llm.model_copy(update={"unknown_user": settings.unknown_user})
            # an explicit pad.user_id names a profile the client expects to exist: 404
            self.strict_llm = llm.model_copy(update={"unknown_user": "error"})
        self.started = int(time.time())
        self.model_id = settings.served_model_name or self.llm.model_name

    def _reward_model_ref(self) -> RewardModelRef:
        """Id and axes of the PersRM the server decodes with (hashed once by the runtime)."""
        return self.runtime.reward_model_ref(self._served_reward_model or "default")

    def warm_up(self) -> None:
        """Load the weights now (not on the first request); set the batching policy."""
        runtime = self.runtime
        runtime.batch_window = self.settings.batch_window
        runtime.max_waves = self.settings.max_waves
        runtime.scheduler  # noqa: B018 - builds the engine and loads the weights
        if self.store_health is not None:
            self.store_health.check()  # the first /health answers from it, at once

    async def read(self, request: Request) -> Completion:
        data = parse_body(await self._body(request))
        # profiles are looked up by the chat model, off the event loop, when the call starts
        return self.resolve(validate_request(data))

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(
                413, f"the request body is {declared} bytes; this server accepts {limit} at most."
            )
        chunks: list[bytes] = []
        size = 0
        timeout = self.settings.body_timeout
        try:
            async with asyncio.timeout(timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise RequestError(
                            413, f"the request body exceeds this server's limit of {limit} bytes."
                        )
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestError(
                408,
                f"the request body did not arrive within {timeout:g} seconds "
                f"({size} bytes received); send the body with the request.",
                code="body_timeout",
            ) from None
        return b"".join(chunks)

    def resolve(self, request: ChatCompletionRequest) -> Completion:
        settings = self.settings
        check_unsupported(request)
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
        kwargs.update(tool_options(request))
        pad = request.pad or PadOptions()
        withheld = settings.multi_user and "user_id" in kwargs and "weights" not in kwargs
        # a preference in words may be answered with another user's learned w_p (the
        # nearest profile): the weights and what gives them back stay out of the answer
        matched = settings.multi_user and "preference" in kwargs and "weights" not in kwargs
        if (withheld or matched) and pad.return_rewards:
            raise RequestError(
                400,
                "pad.return_rewards: per-token rewards and features give back the weights "
                "applied, so this multi-user server does not return them for a request "
                "that names a user (user or pad.user_id) or a preference in words "
                "(pad.preference); send pad.weights to see yours.",
                param="pad.return_rewards",
                code="unsupported_parameter",
            )
        return Completion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            model=self.model_id,
            messages=to_langchain_messages(request.messages),
            kwargs=kwargs,
            strict_user=pad.user_id is not None and not settings.multi_user,
            stream=request.stream,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            return_rewards=pad.return_rewards,
            withheld=withheld,
            hide_weights=matched,
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

    def run(self, completion: Completion) -> Run:
        llm = self.strict_llm if completion.strict_user else self.llm
        return Run(llm, completion, multi_user=self.settings.multi_user)


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
        # a body that did not arrive leaves the connection unreadable: close it
        headers = {"Connection": "close"} if exc.status == 408 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "model": server.model_id}
        if server.store_health is not None:
            store = server.store_health.current()
            out["store"] = store
            if store["status"] not in ("ok", "unchecked"):
                out["status"] = "degraded"  # it still answers; its profiles may not
        return out

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
        run = server.run(completion)
        if not completion.stream:
            answer = await unless_disconnected(
                request, run.answer(), server.settings.disconnect_poll
            )
            if answer is None:  # nobody is left to read it (nginx's "client closed")
                return Response(status_code=499)
            return JSONResponse(answer)
        # the first chunk (prompt and prefill) is watched too; then the stream notices
        if await unless_disconnected(request, run.start(), server.settings.disconnect_poll) is None:
            return Response(status_code=499)
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
