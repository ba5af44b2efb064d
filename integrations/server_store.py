"""The server's profile store, as a multi-user server may use it and ``/health`` reports it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_pad.profiles import PreferenceProfile, RewardModelRef

__all__ = ["StoreHealth", "UsableProfiles"]


class UsableProfiles:
    """A multi-user server's view of its store: a profile it cannot use is no profile.

    A profile learned for another reward model, or whose weights this reward model
    cannot carry (an unknown axis, a weight out of range), would be refused with an
    error that names it, and an error for one id where another id falls back tells
    which ids exist; through this view each reads as an unknown user (who falls back).
    Everything but :meth:`get` is the store's own.
    """

    def __init__(self, store: Any, reward_model: Callable[[], RewardModelRef]) -> None:
        self._store = store
        self._reward_model = reward_model

    def get(self, user_id: str) -> PreferenceProfile | None:
        from langchain_pad.preferences import check_weights

        found: PreferenceProfile | None = self._store.get(user_id)
        if found is None:
            return None
        served = self._reward_model()
        if found.reward_model.id != served.id:
            return None
        try:
            check_weights(dict(found.weights), served.axes)
        except ValueError:
            return None
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class StoreHealth:
    """The profile store's last integrity check, refreshed in the background.

    ``store.health()`` when the store has one, else ``store.check_integrity()`` (which
    reads every profile: far too slow to run per ``/health`` call on a big store).
    A multi-user server reports how many findings there are, not what they say (they
    name user ids).
    """

    def __init__(self, store: Any, *, interval: float, reveal: bool) -> None:
        self.store = store
        self.interval = interval
        self.reveal = reveal
        self.report: dict[str, Any] = {"status": "unchecked"}
        self.checked: float | None = None
        self._refresh: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Run the check now (blocking: call it off the event loop)."""
        try:
            probe = getattr(self.store, "health", None)
            result = probe() if callable(probe) else self.store.check_integrity()
            if isinstance(result, dict):
                report = dict(result)
                findings = list(report.get("findings", []))
                report.setdefault("status", "damaged" if findings else "ok")
            else:
                findings = list(result)
                report = {"status": "damaged" if findings else "ok"}
            report["findings"] = findings if self.reveal else len(findings)
        except Exception as exc:  # a damaged file may raise instead of listing findings
            detail = f"{type(exc).__name__}: {exc}" if self.reveal else type(exc).__name__
            report = {"status": "error", "error": detail}
        self.report = report
        self.checked = time.monotonic()

    def current(self) -> dict[str, Any]:
        """The last report (with its age); starts a refresh when it is stale."""
        stale = self.checked is None or time.monotonic() - self.checked > self.interval
        if stale and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.ensure_future(asyncio.to_thread(self.check))
        age = None if self.checked is None else round(time.monotonic() - self.checked, 1)
        return {**self.report, "checked_seconds_ago": age}
