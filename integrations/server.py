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
store's last integrity check), ``GET /v1/pad/stats`` (the decoding thread's waves, to
see batching at work), ``POST /v1/pad/feedback`` and ``GET /v1/pad/profile`` (learning
a user's ``w_p`` from preference pairs, see ``server_feedback``) and ``GET /metrics``
(Prometheus, see ``server_metrics``).

Identity (``api_keys``, ``serve --api-keys FILE``, see ``server_auth``): every route but
``/health`` and ``/metrics`` needs ``Authorization: Bearer KEY`` (401 without a known
key). Those two stay open so that load balancers and Prometheus can probe without a
secret, and they carry no user's data (``/health`` counts store findings without their
text; metrics have no user or key labels). A key speaks for one user: that user is the
request's ``user`` by default, naming another (``user``, ``pad.user_id``, the feedback's
``user``) is a 403 unless the key is an admin's. Answers to a non-admin key follow the
multi-user rule below, except that the caller's own profile (its version and weights)
is shown; an admin sees everything. Without keys the server is local: ``serve``
refuses a non-loopback ``--host`` unless ``--allow-unauthenticated-remote`` is given.
Per key (or for the whole server without keys), ``max_in_flight_per_key`` requests at
once and ``tokens_per_minute_per_key`` (see ``server_limits``); over them a 429 with
``Retry-After``. A request that waits ``queue_timeout`` s (120 by default) for decoding
to start, behind the token budget or the batch cap, is withdrawn undecoded and answered
503 with ``Retry-After``: under more long prompts than the machine decodes in time,
some are answered and the rest refused promptly instead of all timing out (504).

Personalization per request, decided by the library's one resolver
(``langchain_pad.preferences``), first match wins: ``pad.weights`` (strengths in
[-1, 1] by axis name or as a vector) > ``pad.user_id`` or the standard ``user`` field
(a profile in the server's profile store) > ``pad.preference`` (a preference in words,
matched against the store's known profiles, or the reward model's anchor poles when the
server has no store)
> none. ``pad.beta`` scales the reward; ``pad.return_rewards`` adds the per-token PAD data
to every chunk (streaming) or to the response.

What a response may reveal, without API keys (the server cannot tell one client from
another):

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
  stays observable: the answer's text differs when a profile is applied; only keys
  stop one client from asking with another's id.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "langchain_pad.integrations.server needs the server extra: "
        "pip install 'langchain-pad[server]'"
    ) from exc

from .server_auth import LOCAL, ApiKeys, Caller, check_bind
from .server_feedback import ProfileService, profile_owner, validate_feedback
from .server_limits import Admission, KeyLimits
from .server_messages import to_langchain_messages
from .server_metrics import CONTENT_TYPE, MetricsMiddleware, ServerMetrics
from .server_requests import (
    ChatCompletionRequest,
    ChatMessage,
    PadOptions,
    RequestError,
    parse_body,
    read_body,
    validate_request,
)
from .server_resolve import CompletionResolver
from .server_responses import Completion, Run, unless_disconnected
from .server_settings import ServerSettings
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


class _Server:
    """The app's state: the chat model, who may call, the limits, and how requests
    become calls."""

    def __init__(self, settings: ServerSettings, llm: PADChatModel | None = None) -> None:
        from langchain_pad import PADChatModel
        from langchain_pad.runtime import PADRuntime

        self.settings = settings
        self.keys = None if settings.api_keys is None else ApiKeys.load(settings.api_keys)
        self.limits = KeyLimits(
            max_in_flight=settings.max_in_flight_per_key,
            tokens_per_minute=settings.tokens_per_minute_per_key,
        )
        if llm is None:
            runtime = settings.runtime or PADRuntime(
                settings.model,
                dtype=settings.dtype,
                gate=settings.gate,
                compile_steps=settings.compile_steps,
                max_batch_size=settings.max_batch_size,
                batch_window=settings.batch_window,
                max_waves=settings.max_waves,
                token_budget=settings.token_budget,
                queue_timeout=settings.queue_timeout,
                prefill_budget=settings.prefill_budget,
            )
            llm = PADChatModel(
                runtime=runtime,
                reward_model=settings.reward_model,
                timeout=settings.request_timeout,
                profile_store=settings.profile_store,
            )
        self.runtime: PADRuntime = llm.get_runtime()
        self.metrics = ServerMetrics(self.runtime)
        self._served_reward_model: str | None = llm.reward_model
        self.store = store = llm.profile_store
        reveal = not (settings.multi_user or self.keys is not None)
        self.store_health = (
            None
            if store is None
            else StoreHealth(store, interval=settings.health_interval, reveal=reveal)
        )
        self.profiles = (
            None if store is None else ProfileService(store, llm.reward_model, self.runtime)
        )
        if settings.multi_user and settings.unknown_user == "error":
            raise ValueError(
                "multi_user=True answers unknown users by falling back (a 404 would tell "
                "which user ids exist): leave unknown_user at 'fallback'."
            )
        view = None if store is None else UsableProfiles(store, self._reward_model_ref)
        guarded = {"unknown_user": "fallback", "reveal_matched_users": False}
        self.guarded_llm: PADChatModel = llm.model_copy(update={**guarded, "profile_store": view})
        self.open_llm: PADChatModel = llm.model_copy(update={"unknown_user": settings.unknown_user})
        # an explicit pad.user_id names a profile the client expects to exist: 404
        self.strict_llm: PADChatModel = llm.model_copy(update={"unknown_user": "error"})
        self.started = int(time.time())
        self.model_id = settings.served_model_name or llm.model_name
        self.resolver = CompletionResolver(settings, self.model_id, store)

    def _reward_model_ref(self) -> RewardModelRef:
        """Id and axes of the PersRM the server decodes with (hashed once by the runtime)."""
        return self.runtime.reward_model_ref(self._served_reward_model or "default")

    def warm_up(self) -> None:
        """Load the weights now (not on the first request); set the batching policy; with
        ``compile_steps``, compile before serving (minutes in which requests would queue
        and, past ``queue_timeout``, be refused)."""
        runtime = self.runtime
        runtime.batch_window = self.settings.batch_window
        runtime.max_waves = self.settings.max_waves
        runtime.scheduler  # noqa: B018 - builds the engine and loads the weights
        if runtime.compile_steps:  # compile now, not inside (and in the queue of) a request
            llm = self.open_llm.model_copy(update={"max_tokens": 2})
            llm.invoke("Hello")
            if self._served_reward_model is not None:
                llm.invoke("Hello", weights={self._reward_model_ref().axes[0]: 1.0})
        if self.store_health is not None:
            self.store_health.check()  # the first /health answers from it, at once

    def caller(self, request: Request) -> Caller:
        """Who sent ``request`` (a 401 on a keyed server without a known key)."""
        if self.keys is None:
            return LOCAL
        return self.keys.identify(request.headers.get("authorization"))

    async def read(self, request: Request, caller: Caller) -> Completion:
        data = parse_body(await self.body(request))
        # profiles are looked up by the chat model, off the event loop, when the call starts
        return self.resolver.resolve(validate_request(data), caller)

    async def body(self, request: Request) -> bytes:
        settings = self.settings
        return await read_body(
            request, limit=settings.max_request_bytes, timeout=settings.body_timeout
        )

    def run(self, completion: Completion) -> Run:
        if completion.guarded:
            llm = self.guarded_llm
        else:
            llm = self.strict_llm if completion.strict_user else self.open_llm
        return Run(
            llm,
            completion,
            multi_user=completion.guarded,
            on_chunk=self.metrics.chunk,
            on_first=self.metrics.queue_wait.observe,
        )

    async def admit(self, completion: Completion, admission: Admission) -> None:
        """Reserve the request's prompt and ``max_tokens`` from its key's budget."""
        if self.limits.tokens_per_minute is None:
            return
        prompt = await asyncio.to_thread(self._prompt_tokens, completion)
        admission.reserve(prompt + int(completion.kwargs["max_tokens"]))

    def _prompt_tokens(self, completion: Completion) -> int:
        """The messages' tokens plus a few per turn for the chat template (settled with
        the real count when the answer ends)."""
        tokenizer = self.runtime.loaded.tokenizer
        texts = [str(m.content) for m in completion.messages]
        return sum(len(tokenizer.encode(t, add_special_tokens=False)) + 4 for t in texts)

    def profile_service(self) -> ProfileService:
        if self.profiles is None:
            raise RequestError(
                409,
                "this server keeps no profiles; start it with --profiles PATH.",
                code="no_profile_store",
            )
        return self.profiles


def _settle(run: Run | None, admission: Admission) -> None:
    used = None if run is None else (run.prompt_tokens or 0) + run.generated
    admission.settle(used)


def create_app(
    settings: ServerSettings | None = None, *, llm: PADChatModel | None = None
) -> FastAPI:
    """The FastAPI application; ``uvicorn.run(create_app(...))`` serves it.

    ``llm`` serves a ready-made :class:`~langchain_pad.PADChatModel` (its model, reward
    model and profile store) instead of one built from ``settings``; the limits, keys and
    the batch window still come from ``settings``. A malformed ``api_keys`` is a
    ``ValueError`` here, before anything is served.
    """
    from contextlib import asynccontextmanager

    server = _Server(settings or ServerSettings(), llm)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(server.warm_up)
        yield

    app = FastAPI(title="langchain-pad", version="0.1.0", lifespan=lifespan)
    app.state.pad = server
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)

    @app.exception_handler(RequestError)
    async def request_error(_request: Request, exc: RequestError) -> Response:
        headers = dict(exc.headers or {})
        if exc.status == 408:  # a body that did not arrive leaves the connection unreadable
            headers["Connection"] = "close"
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers or None)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "model": server.model_id}
        if server.store_health is not None:
            store = server.store_health.current()
            out["store"] = store
            if store["status"] not in ("ok", "unchecked"):
                out["status"] = "degraded"  # it still answers; its profiles may not
        return out

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        server.caller(request)
        return {"object": "list", "data": [_model_card(server)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(request: Request, model_id: str) -> dict[str, Any]:
        server.caller(request)
        if model_id != server.model_id:
            raise RequestError(
                404, f"The model {model_id!r} does not exist.", code="model_not_found"
            )
        return _model_card(server)

    @app.get("/v1/pad/stats")
    async def stats(request: Request) -> dict[str, Any]:
        server.caller(request)
        return server.runtime.stats()

    @app.get("/v1/pad/profile")
    async def profile(request: Request, user: str | None = None) -> dict[str, Any]:
        user_id = profile_owner(server.caller(request), user, server.settings.multi_user)
        return await server.profile_service().profile(user_id)

    @app.post("/v1/pad/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        caller = server.caller(request)
        admission = server.limits.admit(caller.limit_key)
        try:
            pair = validate_feedback(parse_body(await server.body(request)))
            service = server.profile_service()
            owner = profile_owner(caller, pair.user, server.settings.multi_user)
            return await service.record(owner, pair)
        finally:
            admission.settle(None)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        caller = server.caller(request)
        admission = server.limits.admit(caller.limit_key)
        run: Run | None = None
        streaming = False
        poll = server.settings.disconnect_poll
        try:
            completion = await server.read(request, caller)
            await server.admit(completion, admission)
            run = server.run(completion)
            server.metrics.in_flight.inc()
            try:
                if not completion.stream:
                    answer = await unless_disconnected(request, run.answer(), poll)
                    if answer is None:  # nobody is left to read it (nginx's "client closed")
                        return Response(status_code=499)
                    return JSONResponse(answer)
                # the first chunk (prompt and prefill) is watched too; then the stream notices
                if await unless_disconnected(request, run.start(), poll) is None:
                    return Response(status_code=499)
                streaming = True
                return _Stream(run.events(), on_close=_closer(server, run, admission))
            finally:
                if not streaming:
                    server.metrics.in_flight.dec()
        finally:
            if not streaming:
                _settle(run, admission)

    return app


class _Stream(StreamingResponse):
    """Server-sent events that settle their request however the response ends: also
    when the client is gone before the first byte (the body is then never iterated,
    so a ``finally`` inside it would never run)."""

    def __init__(
        self, events: AsyncIterator[bytes], *, on_close: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


def _closer(server: _Server, run: Run, admission: Admission) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        with suppress(RuntimeError):  # a stream never read to its end still holds its row
            await run.close()
        server.metrics.in_flight.dec()
        _settle(run, admission)

    return close


def _model_card(server: _Server) -> dict[str, Any]:
    return {
        "id": server.model_id,
        "object": "model",
        "created": server.started,
        "owned_by": "langchain-pad",
    }


def serve(
    settings: ServerSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    allow_unauthenticated_remote: bool = False,
) -> None:
    """Run the server in this process until interrupted.

    Without ``settings.api_keys`` a non-loopback ``host`` is refused (``ValueError``)
    unless ``allow_unauthenticated_remote``: such a server trusts whoever reaches it.
    """
    import uvicorn

    settings = settings or ServerSettings()
    check_bind(
        host,
        keyed=settings.api_keys is not None,
        allow_unauthenticated_remote=allow_unauthenticated_remote,
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
