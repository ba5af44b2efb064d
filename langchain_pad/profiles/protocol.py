"""What a profile store is: the ``ProfileStore`` protocol, its errors and records, and
the transaction primitive every backend implements.

Guarantees every backend must give (``langchain_pad.profiles.testing`` checks them):

- every save makes a new version ``n + 1`` and keeps the previous ones in the history;
  nothing is overwritten without a trace (a delete is a history entry too);
- ``put(..., expected_version=n)`` fails with :class:`VersionConflictError` if another
  writer got there first (optimistic concurrency);
- ``record_feedback`` stores the pair, refits ``w_p`` and saves the new version in one
  transaction: concurrent feedback for the same user is never lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from langchain_pad.profiles.matching import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    MatchResult,
)
from langchain_pad.profiles.profile import (
    PreferenceProfile,
    ProfileVersion,
    RewardModelRef,
    utcnow,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "DescriptionRows",
    "FeedbackLearner",
    "FeedbackRecord",
    "Kind",
    "ProfileStore",
    "ProfileStoreError",
    "Transaction",
    "UnknownProfileError",
    "VersionConflictError",
    "tombstone",
]

Kind = Literal["user", "anchor"]
DescriptionRows = tuple[list[int], list[str], list[str], "npt.NDArray[np.float32]"]
"""Description rows: ids, user ids, texts, vectors ``[n, dim]``."""


class ProfileStoreError(RuntimeError):
    """A profile store operation could not be done; the message says why."""


class UnknownProfileError(ProfileStoreError, KeyError):
    """No profile is stored under this user id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown profile"


class VersionConflictError(ProfileStoreError):
    """The profile changed since the version the writer expected."""


class FeedbackRecord(BaseModel):
    """One preference judgement a user gave, and the profile version it produced."""

    id: int | None = None
    user_id: str
    prompt: str = Field(min_length=1)
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    features: list[float] | None = None
    """``F(chosen) - F(rejected)`` under the reward model ``reward_model_id`` (stage 2's input)."""
    reward_model_id: str | None = None
    profile_version: int = 0
    created_at: datetime = Field(default_factory=utcnow)


@runtime_checkable
class FeedbackLearner(Protocol):
    """Turns a user's feedback into new weights. ``features`` runs outside the store's
    write lock (it may run a model); ``refit`` runs inside it, so it must be quick: the
    store hands it every pair with features of the learner's reward model already."""

    @property
    def reward_model(self) -> RewardModelRef: ...

    def features(self, prompt: str, chosen: str, rejected: str) -> list[float] | None: ...

    def refit(
        self, profile: PreferenceProfile, feedback: Sequence[FeedbackRecord]
    ) -> Mapping[str, float]: ...


@runtime_checkable
class ProfileStore(Protocol):
    """What PADChatModel, the CLI and integrations need from a profile store."""

    def get(self, user_id: str) -> PreferenceProfile | None: ...
    def require(self, user_id: str) -> PreferenceProfile: ...
    def put(
        self,
        profile: PreferenceProfile,
        *,
        expected_version: int | None = None,
        reason: str = "put",
    ) -> PreferenceProfile: ...
    def delete(self, user_id: str) -> None: ...
    def list_profiles(
        self, *, kind: Kind | None = None, limit: int | None = None, offset: int = 0
    ) -> list[PreferenceProfile]: ...
    def count(self, *, kind: Kind | None = None) -> int: ...
    def history(self, user_id: str) -> list[ProfileVersion]: ...
    def feedback(self, user_id: str) -> list[FeedbackRecord]: ...
    def match(
        self,
        description: str,
        *,
        top_k: int = DEFAULT_TOP_K,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        kind: Kind | None = None,
        rerank: bool | None = None,
    ) -> MatchResult: ...
    def record_feedback(
        self,
        user_id: str,
        prompt: str,
        chosen: str,
        rejected: str,
        *,
        learner: FeedbackLearner | None = None,
    ) -> PreferenceProfile: ...
    def seed_anchors(self, anchors: Sequence[PreferenceProfile]) -> int: ...
    def export_json(self) -> dict[str, Any]: ...
    def import_json(self, data: Mapping[str, Any]) -> int: ...
    def check_integrity(self) -> list[str]: ...
    def close(self) -> None: ...

    async def aget(self, user_id: str) -> PreferenceProfile | None: ...
    async def aput(
        self,
        profile: PreferenceProfile,
        *,
        expected_version: int | None = None,
        reason: str = "put",
    ) -> PreferenceProfile: ...
    async def ahistory(self, user_id: str) -> list[ProfileVersion]: ...
    async def amatch(
        self,
        description: str,
        *,
        top_k: int = DEFAULT_TOP_K,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        kind: Kind | None = None,
        rerank: bool | None = None,
    ) -> MatchResult: ...
    async def arecord_feedback(
        self,
        user_id: str,
        prompt: str,
        chosen: str,
        rejected: str,
        *,
        learner: FeedbackLearner | None = None,
    ) -> PreferenceProfile: ...


class Transaction(Protocol):
    """Backend primitives inside one atomic, exclusive write."""

    def load(self, user_id: str) -> PreferenceProfile | None: ...
    def descriptions(self, user_id: str) -> list[str]: ...
    def save(
        self,
        profile: PreferenceProfile,
        reason: str,
        vectors: Sequence[tuple[str, Sequence[float]]] | None,
    ) -> None:
        """Write ``profile`` as current plus a history row; ``vectors`` (text, unit
        vector) replaces the profile's description rows when given."""
        ...

    def write_history(self, entry: ProfileVersion) -> None: ...
    def remove(self, user_id: str) -> None:
        """Drop the current profile and its description rows (history stays)."""
        ...

    def add_feedback(self, record: FeedbackRecord) -> int: ...
    def feedback(self, user_id: str) -> list[FeedbackRecord]: ...
    def set_features(
        self, record: FeedbackRecord, features: list[float] | None, reward_model_id: str
    ) -> None:
        """Replace a stored pair's features (they were recomputed for another PersRM)."""
        ...


def history_entry(profile: PreferenceProfile, reason: str) -> ProfileVersion:
    """The history entry a save leaves: the profile as saved, without its embedding
    (the current row keeps that; history would only repeat it per version)."""
    return ProfileVersion(
        user_id=profile.user_id,
        version=profile.version,
        reason=reason,
        recorded_at=profile.updated_at,
        profile=profile.model_copy(update={"embedding": None}),
    )


def tombstone(user_id: str, version: int) -> ProfileVersion:
    """The history entry a deletion leaves: the version number, no profile."""
    return ProfileVersion(
        user_id=user_id, version=version, reason="delete", recorded_at=utcnow(), profile=None
    )
