"""Learning over HTTP: ``POST /v1/pad/feedback`` and ``GET /v1/pad/profile``.

```bash
curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/pad/feedback \\
  -d '{"prompt": "Explain DNS.", "chosen": "DNS maps names...", "rejected": "Well, so..."}'
# {"object": "pad.profile", "user_id": "ana", "version": 4, "previous_version": 3, ...}
```

A feedback pair goes through the profile store's own ``record_feedback`` (the pair,
the stage-2 refit and the new version in one transaction; see
``langchain_pad.profiles.learning``), with a learner on the PersRM the server decodes
with, taken from the server's runtime (the weights are held once). It runs in a worker
thread: computing a pair's features is a PersRM forward pass, and the event loop keeps
serving meanwhile. The next request of that user is answered with the new version.

Whose profile: the API key's user; an admin key may name another with ``user``. A
server without keys is single-tenant: the request names the user (``user``), and a
``--multi-user`` server without keys refuses both routes (anyone could rewrite anyone).

What is shown is what the store returns (weights as the store keeps them), so a change
of the weights' unit in the store changes this answer with it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .server_auth import Caller, check_user
from .server_requests import RequestError

if TYPE_CHECKING:
    from langchain_pad.profiles import FeedbackLearner, PreferenceProfile
    from langchain_pad.runtime import PADRuntime

__all__ = [
    "FeedbackRequest",
    "ProfileService",
    "profile_body",
    "profile_owner",
    "validate_feedback",
]


class FeedbackRequest(BaseModel):
    """One preference judgement: for ``prompt``, ``chosen`` was preferred to ``rejected``."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    user: str | None = Field(default=None, min_length=1, max_length=256)
    """Whose profile learns: default the API key's user (another only for an admin)."""


_FORMS = {
    "prompt": "a non-empty string, the question both answers reply to",
    "chosen": "a non-empty string, the answer the user preferred",
    "rejected": "a non-empty string, the answer the user liked less",
    "user": "a user id of 1 to 256 characters (an admin's choice; default: the key's user)",
}


def validate_feedback(data: dict[str, Any]) -> FeedbackRequest:
    """``data`` as a feedback pair, or a 400 naming the field and the form it accepts."""
    try:
        return FeedbackRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "body"
        if error["type"] == "extra_forbidden":
            message = f"{field}: unknown field; a feedback body has {sorted(_FORMS)}."
        else:
            message = f"{field}: {error['msg']}; expected {_FORMS.get(field, 'see the docs')}."
        raise RequestError(400, message, param=field, code="invalid_parameter") from None


def profile_owner(caller: Caller, named: str | None, multi_user: bool) -> str:
    """The user a profile route is about (a 403 or 400 when the caller may not say)."""
    if caller.keyed:
        user_id = check_user(caller, named, param="user")
        assert user_id is not None  # a key always speaks for a user
        return user_id
    if multi_user:
        raise RequestError(
            403,
            "this multi-user server has no API keys, so it cannot tell whose profile "
            "a request may read or teach; start it with --api-keys FILE.",
            code="needs_api_keys",
        )
    if named is None:
        raise RequestError(400, "user: this server has no API keys; name the user.", param="user")
    return named


def profile_body(profile: PreferenceProfile, *, previous: int | None = None) -> dict[str, Any]:
    """A profile as the API shows it to its owner (or an admin)."""
    body: dict[str, Any] = {
        "object": "pad.profile",
        "user_id": profile.user_id,
        "version": profile.version,
        "weights": dict(profile.weights),
        "description": profile.description,
        "feedback_count": profile.feedback_count,
        "reward_model": {"id": profile.reward_model.id, "axes": list(profile.reward_model.axes)},
        "updated_at": profile.updated_at.isoformat(),
    }
    if previous is not None:
        body["previous_version"] = previous
    return body


class ProfileService:
    """The store's read and learn operations, off the event loop, as HTTP answers."""

    def __init__(self, store: Any, reward_model: str | None, runtime: PADRuntime) -> None:
        self.store = store
        self.reward_model = reward_model
        self.runtime = runtime
        self._learner: FeedbackLearner | None = None
        self._lock = threading.Lock()

    def learner(self) -> FeedbackLearner:
        """The stage-2 learner on the served PersRM, built once (on a worker thread)."""
        if self.reward_model is None:
            raise RequestError(
                409,
                "this server decodes without a reward model (--reward-model none), so "
                "there is nothing to learn a preference for.",
                code="no_reward_model",
            )
        with self._lock:
            if self._learner is None:
                from langchain_pad.profiles import Stage2Learner

                self._learner = Stage2Learner.for_reward_model(
                    self.reward_model, runtime=self.runtime
                )
            return self._learner

    async def profile(self, user_id: str) -> dict[str, Any]:
        found = await asyncio.to_thread(self.store.get, user_id)
        if found is None:
            raise RequestError(
                404,
                f"no preference profile is stored for user {user_id!r} yet; "
                "POST /v1/pad/feedback creates it.",
                code="profile_not_found",
            )
        return profile_body(found)

    async def record(self, user_id: str, pair: FeedbackRequest) -> dict[str, Any]:
        return await asyncio.to_thread(self._record, user_id, pair)

    def _record(self, user_id: str, pair: FeedbackRequest) -> dict[str, Any]:
        from langchain_pad.profiles import ProfileStoreError

        learner = self.learner()
        try:
            after = self.store.record_feedback(
                user_id, pair.prompt, pair.chosen, pair.rejected, learner=learner
            )
        except ProfileStoreError as exc:
            raise RequestError(409, str(exc), code="profile_store_refused") from None
        except ValueError as exc:  # e.g. chosen == rejected: nothing to learn
            raise RequestError(422, str(exc), code="unprocessable_feedback") from None
        # the pair and the refit are one new version (see langchain_pad.profiles.learning)
        return profile_body(after, previous=after.version - 1)
