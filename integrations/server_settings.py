"""What one server process serves, its limits, and who may call it: ``ServerSettings``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_pad.models import Dtype

__all__ = ["ServerSettings"]


@dataclass
class ServerSettings:
    """What one server process serves, and its limits."""

    model: str = "smollm2-135m-instruct"
    """Model name, Hugging Face id or local directory (as ``PADChatModel(model=...)``)."""
    reward_model: str | None = "default"
    """PersRM directory, ``"default"`` (the shipped one) or None (no personalization)."""
    served_model_name: str | None = None
    """Name clients pass as ``model``; defaults to ``model``."""
    dtype: Dtype = "float32"
    gate: bool = True
    """Skip the PersRM where the plausibility floor leaves the base model's top token
    alone (``PADRuntime(gate=...)``): the same answers, fewer reward calls. False scores
    every token, for clients that want every token's reward."""
    compile_steps: bool = False
    """Decoding steps through ``torch.compile`` (``PADRuntime(compile_steps=...)``):
    faster tokens; the server compiles them at start-up (minutes) before it serves."""
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
    prefill_budget: int | None = 8192
    """Prompt tokens (rows x the longest prompt) one wave prefills in one forward pass:
    long prompts each start their own wave instead of one slow shared prefill."""
    queue_timeout: float | None = 120.0
    """Seconds a request may wait for decoding to start (behind the token budget or the
    batch cap) before it is refused with 503 and ``Retry-After``: under more long
    prompts than the machine decodes in time, some requests are answered and the rest
    refused promptly, instead of all of them queueing into the 504 of
    ``request_timeout``. None: requests queue until ``request_timeout``."""
    request_timeout: float | None = 600.0
    """Seconds one completion may take before it fails (504)."""
    profile_store: Any = None
    """A ``langchain_pad.profiles.ProfileStore``: resolves ``user`` and ``pad`` profiles,
    and learns from ``POST /v1/pad/feedback``."""
    unknown_user: Literal["fallback", "error"] = "fallback"
    """A ``user`` with no stored profile: fall back (to ``pad.preference`` or no
    personalization), or answer 404. An explicit ``pad.user_id`` gets 404 on a
    single-tenant server; with ``multi_user`` every unknown user falls back."""
    multi_user: bool = False
    """Responses never name other users nor show a stored profile's data (see the module
    docstring); False: a local, single-tenant server that shows everything. With
    ``api_keys`` the same rule holds per key instead (a caller sees its own profile)."""
    api_keys: str | Path | Mapping[str, Any] | None = None
    """Who may call: a JSON file (or the mapping it holds) from each API key to a user id,
    or to ``{"user_id": ..., "admin": true}``. Every route but ``/health`` and
    ``/metrics`` then needs ``Authorization: Bearer KEY`` (401 without a known one); a
    key's user is the caller's user; naming another user is a 403 unless the key is an
    admin's; non-admin answers never show other users' data. A malformed file is a
    ``ValueError`` naming the file and the problem when the app is built. None: no keys,
    a local server (``serve`` refuses a non-loopback host without them)."""
    max_in_flight_per_key: int | None = 64
    """Requests one key (or, without keys, the whole server) may have open at once; one
    more is a 429 with ``Retry-After``. None: no limit. Twice the batch size by default,
    which one user does not reach."""
    tokens_per_minute_per_key: int | None = 1_000_000
    """Prompt + ``max_tokens`` a key may reserve per minute (a token bucket that refills
    continuously and holds at most a minute's worth); each request reserves its prompt
    and its ``max_tokens`` and gives back what it did not use when it ends. Over it: a
    429 whose ``Retry-After`` says when the tokens are there. None: no limit. The
    default is far above what one process of this model decodes in a minute."""
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
