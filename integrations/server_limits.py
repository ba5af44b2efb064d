"""Per-key limits: requests in flight, and tokens per minute; over them, a 429.

Each key (or, on a server without keys, the one local caller) has its own counters,
so one key's burst never slows another's requests. Tokens are a bucket that holds at
most a minute's worth and refills continuously: a request reserves its prompt and its
``max_tokens`` when it is admitted (what it may cost, so a burst cannot overshoot), and
:meth:`Admission.settle` gives back what it did not use when it ends. Everything here
runs on the server's event loop (one thread); the lock only keeps it correct if a
caller ever uses it from another.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .server_requests import RequestError

__all__ = ["Admission", "KeyLimits"]


@dataclass
class _Account:
    in_flight: int = 0
    tokens: float = 0.0
    refilled: float = 0.0


@dataclass
class Admission:
    """One admitted request: release it when it ends (settling its tokens)."""

    limits: KeyLimits
    key: str
    reserved: int = 0
    _done: bool = field(default=False, repr=False)

    def reserve(self, tokens: int, *, param: str = "max_tokens") -> None:
        """Take ``tokens`` from the key's per-minute budget (a 429 when they are not there)."""
        self.limits._take(self.key, tokens, param)
        self.reserved += tokens

    def settle(self, used: int | None) -> None:
        """End the request: give back the in-flight slot and the tokens it did not use
        (``used``: prompt + generated tokens; None: all of them, it never ran)."""
        if self._done:
            return
        self._done = True
        refund = self.reserved if used is None else max(0, self.reserved - used)
        self.limits._release(self.key, refund)


class KeyLimits:
    """In-flight and per-minute token limits, counted per key."""

    def __init__(
        self,
        *,
        max_in_flight: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limits = {"max_in_flight": max_in_flight, "tokens_per_minute": tokens_per_minute}
        for name, value in limits.items():
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(
                    f"{name} must be None (no limit) or an integer >= 1, got {value!r}."
                )
        self.max_in_flight = max_in_flight
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock
        self._accounts: dict[str, _Account] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> Admission:
        """Count one more request in flight for ``key``, or a 429."""
        with self._lock:
            account = self._account(key)
            if self.max_in_flight is not None and account.in_flight >= self.max_in_flight:
                raise _too_many(
                    f"this API key already has {account.in_flight} requests in flight, its "
                    f"limit; retry when one has finished.",
                    retry_after=1,
                    code="too_many_requests_in_flight",
                )
            account.in_flight += 1
        return Admission(self, key)

    def _account(self, key: str) -> _Account:
        account = self._accounts.get(key)
        if account is None:
            account = _Account(tokens=float(self.tokens_per_minute or 0), refilled=self._clock())
            self._accounts[key] = account
        return account

    def _refill(self, account: _Account) -> None:
        assert self.tokens_per_minute is not None
        now = self._clock()
        rate = self.tokens_per_minute / 60.0
        account.tokens = min(
            float(self.tokens_per_minute), account.tokens + (now - account.refilled) * rate
        )
        account.refilled = now

    def _take(self, key: str, tokens: int, param: str) -> None:
        budget = self.tokens_per_minute
        if budget is None or tokens <= 0:
            return
        if tokens > budget:
            raise RequestError(
                400,
                f"{param}: this request may use {tokens} tokens (prompt + max_tokens), more "
                f"than this API key's {budget} tokens per minute; lower max_tokens or "
                "shorten the prompt.",
                param=param,
                code="request_too_large",
            )
        with self._lock:
            account = self._account(key)
            self._refill(account)
            if account.tokens < tokens:
                wait = (tokens - account.tokens) / (budget / 60.0)
                raise _too_many(
                    f"this API key's budget of {budget} tokens per minute is used up "
                    f"(this request reserves {tokens}: its prompt and max_tokens); retry in "
                    f"{math.ceil(wait)} s.",
                    retry_after=math.ceil(wait),
                    code="tokens_per_minute_exceeded",
                )
            account.tokens -= tokens

    def _release(self, key: str, refund: int) -> None:
        with self._lock:
            account = self._account(key)
            account.in_flight = max(0, account.in_flight - 1)
            if self.tokens_per_minute is not None and refund:
                self._refill(account)
                account.tokens = min(float(self.tokens_per_minute), account.tokens + refund)


def _too_many(message: str, *, retry_after: int, code: str) -> RequestError:
    return RequestError(429, message, code=code, headers={"Retry-After": str(max(1, retry_after))})
