"""``BaseProfileStore``: a backend's primitives assembled into the public store.

Each job lives in its own module and is only wired up here: versioned CRUD
(:mod:`~langchain_pad.profiles.versioning`), matching
(:class:`~langchain_pad.profiles.matcher.ProfileMatcher`, owned by the store),
feedback (:mod:`~langchain_pad.profiles.learning`), export/import and integrity
(:mod:`~langchain_pad.profiles.transfer`) and the async twins
(:mod:`~langchain_pad.profiles.async_twins`). The store also knows the reward model
it serves (``reward_model=``, the shipped PersRM by default): it seeds that model's
anchors, whatever backend or path, and learns from feedback with it when no learner
is given.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_pad.profiles import learning, transfer
from langchain_pad.profiles.async_twins import AsyncTwins
from langchain_pad.profiles.matcher import ProfileMatcher, UserSearch
from langchain_pad.profiles.matching import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    EmbeddingIndex,
    MatchResult,
)
from langchain_pad.profiles.profile import utcnow
from langchain_pad.profiles.protocol import FeedbackLearner, Kind, ProfileStoreError
from langchain_pad.profiles.versioning import VersionedStore

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from langchain_pad.embeddings import Embedder
    from langchain_pad.profiles.profile import PreferenceProfile, RewardModelRef
    from langchain_pad.profiles.ranking import AnchorRanker

__all__ = ["AUTO", "BaseProfileStore", "RewardModelSetting"]

RewardModelSetting = str | Path | None
"""A PersRM directory, ``"default"`` (the shipped PersRM) or None (no reward model)."""
AUTO = "auto"
"""``anchors_from`` default: the anchors of the store's reward model (unless ``anchors=``)."""


class BaseProfileStore(AsyncTwins, VersionedStore):
    """The public profile-store operations over a backend's primitives.

    ``reward_model`` names the PersRM the store's profiles belong to (``"default"``:
    the shipped one; None: none). A backend calls :meth:`_seed_initial` at the end of
    its ``__init__`` to seed that model's anchors (``anchors_from=AUTO``), another
    PersRM directory's, or none (``anchors_from=None``); explicit ``anchors`` are
    seeded too, and with ``anchors_from=AUTO`` they replace the reward model's.

    A backend with its own nearest-neighbour search passes ``search`` (user profiles
    are then searched there) and ``index_anchors_only=True`` (only the anchor rows are
    held in process, for the ranker).
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        learner: FeedbackLearner | None = None,
        reward_model: RewardModelSetting = "default",
        search: UserSearch | None = None,
        index_anchors_only: bool = False,
    ) -> None:
        super().__init__(embedder=embedder)
        self.learner = learner
        """The learner ``record_feedback`` uses when the call passes none; None: a
        :class:`~langchain_pad.profiles.Stage2Learner` for :attr:`reward_model_dir`."""
        self.reward_model_dir = _reward_model_dir(reward_model)
        """The PersRM directory the store serves (resolved), or None."""
        self._last_check: _Check | None = None
        self._default_learner: FeedbackLearner | None = None
        self._default_learner_lock = threading.Lock()
        self.matcher = ProfileMatcher(
            state=lambda: self._description_state(index_anchors_only),
            rows=lambda after: self._description_rows(after, index_anchors_only),
            read_many=lambda user_ids: self._read_many(user_ids),
            embed=lambda texts: self._embed(texts),  # late-bound: wrappers see every call
            embedding_name=lambda: self.embedder.name,
            search=search,
        )
        """The store's search object: index, anchor ranker, query-embedding cache."""

    # ------------------------------------------------------------------ reward model

    @property
    def reward_model_ref(self) -> RewardModelRef | None:
        """Id and axes of the store's reward model (None without one): compare it with
        ``profile.reward_model`` before steering with a stored profile."""
        if self.reward_model_dir is None:
            return None
        from langchain_pad.profiles.anchors import reward_model_ref

        return reward_model_ref(self.reward_model_dir)

    @property
    def stored_context(self) -> dict[str, Any]:
        """Validation context for profiles read back from this store: the calibration of
        its reward model, so profiles saved before pole units are converted on read
        (read once per store: a reread per row would cost a file read each)."""
        cached: dict[str, Any] | None = self.__dict__.get("_stored_context")
        if cached is not None:
            return cached
        from langchain_pad.calibration import CalibrationError, load_calibration
        from langchain_pad.profiles.profile import stored_context

        context = stored_context()
        ref = self.reward_model_ref
        if ref is not None and self.reward_model_dir is not None:
            with contextlib.suppress(CalibrationError):  # other PersRMs' rows say what to do
                context = stored_context(
                    {ref.id: load_calibration(self.reward_model_dir, ref.axes)}
                )
        self.__dict__["_stored_context"] = context
        return context

    def _seed_initial(
        self, anchors: Sequence[PreferenceProfile], anchors_from: str | Path | None
    ) -> None:
        """Seed the anchors a new store starts with (idempotent: re-opening writes nothing)."""
        source: str | Path | None = anchors_from
        if anchors_from == AUTO:
            source = None if anchors else self.reward_model_dir
        profiles = list(anchors)
        if source is not None:
            from langchain_pad.profiles.anchors import anchor_profiles

            profiles += anchor_profiles(source)
        if profiles:
            self.seed_anchors(profiles)

    # ------------------------------------------------------------------ matching

    @property
    def rerank(self) -> bool:
        """Rank the anchor poles with the anchor ranker in :meth:`match` (the default);
        False ranks every profile by cosine alone. ``match(..., rerank=...)`` overrides
        it for one call."""
        return self.matcher.rerank

    @rerank.setter
    def rerank(self, value: bool) -> None:
        self.matcher.rerank = value

    def refresh_index(self) -> EmbeddingIndex:
        """Bring the in-process index up to date with the stored descriptions."""
        return self.matcher.refresh()

    def anchor_ranker(self) -> AnchorRanker | None:
        """The ranker of the stored anchors (None with fewer than two)."""
        return self.matcher.anchor_ranker()

    def match(
        self,
        description: str,
        *,
        top_k: int = DEFAULT_TOP_K,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        kind: Kind | None = None,
        rerank: bool | None = None,
    ) -> MatchResult:
        """Known profiles nearest to a preference described in words, and their ``w_p``
        (see :meth:`ProfileMatcher.match`)."""
        return self.matcher.match(
            description,
            top_k=top_k,
            threshold=threshold,
            margin=margin,
            kind=kind,
            rerank=rerank,
        )

    def match_vector(
        self,
        query: npt.NDArray[np.float32],
        *,
        query_text: str = "",
        top_k: int = DEFAULT_TOP_K,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        kind: Kind | None = None,
        rerank: bool | None = None,
    ) -> MatchResult:
        """:meth:`match` for an already embedded query (see
        :meth:`ProfileMatcher.match_vector`)."""
        return self.matcher.match_vector(
            query,
            query_text=query_text,
            top_k=top_k,
            threshold=threshold,
            margin=margin,
            kind=kind,
            rerank=rerank,
        )

    # ------------------------------------------------------------------ feedback

    def record_feedback(
        self,
        user_id: str,
        prompt: str,
        chosen: str,
        rejected: str,
        *,
        learner: FeedbackLearner | None = None,
    ) -> PreferenceProfile:
        """Keep a ``(prompt, chosen, rejected)`` judgement and refit the user's ``w_p``.

        Features are computed outside the write lock; the pair, the refit and the new
        version are one transaction (:mod:`~langchain_pad.profiles.learning`). The
        learner is ``learner``, else the store's, else a stage-2 learner for the
        store's reward model (built on first use: it loads the base model).
        """
        learning.check_pair(user_id, chosen, rejected)
        self._require_writable()  # before the learner runs a model
        return learning.record_feedback(
            self, self._learner(learner), user_id, prompt, chosen, rejected
        )

    def _learner(self, learner: FeedbackLearner | None) -> FeedbackLearner:
        chosen = learner or self.learner
        if chosen is not None:
            return chosen
        if self.reward_model_dir is None:
            raise ProfileStoreError(
                "record_feedback needs a learner to refit w_p: this store has no reward "
                "model (reward_model=None); pass learner= (e.g. Stage2Learner(reward_model, "
                "tokenizer)) to the store or to this call"
            )
        with self._default_learner_lock:
            if self._default_learner is None:
                from langchain_pad.profiles.feedback import Stage2Learner

                self._default_learner = Stage2Learner.for_reward_model(self.reward_model_dir)
            return self._default_learner

    # ------------------------------------------------------------------ export / import

    def export_json(self) -> dict[str, Any]:
        """Every profile, its whole history and its feedback, as JSON-ready data."""
        return transfer.export_json(self)

    def import_json(self, data: Mapping[str, Any]) -> int:
        """Load an export (see :func:`~langchain_pad.profiles.transfer.import_json`)."""
        return transfer.import_json(self, data)

    def check_integrity(self) -> list[str]:
        """Problems found; an empty list means the store is consistent.

        Never raises on a damaged store: what is wrong comes back as findings (see
        :func:`~langchain_pad.profiles.transfer.integrity_report`). The result is kept
        for :meth:`health`.
        """
        backend, consistency = transfer.integrity_report(self)
        self._last_check = _Check(backend, len(consistency), utcnow())
        self._after_check(backend)
        return backend + consistency

    def _after_check(self, backend_findings: list[str]) -> None:
        """A backend reacts to a full check (SQLite refuses writes while it finds damage)."""

    def health(self, *, refresh: bool = False) -> dict[str, Any]:
        """The store's state, cheap enough for a server's ``/health``.

        ``{"ok": bool, "backend": "sqlite" | "postgres" | "memory" | ..., "read_only":
        bool, "findings": [str, ...], "checked_at": ISO time of the last full check or
        None}``. ``ok`` is False when something is wrong (damage found by the last
        :meth:`check_integrity`, before a write or by a failed statement, or a cheap
        probe now); a read-only store is ``ok`` (it serves reads). ``refresh=True``
        runs the full :meth:`check_integrity` first (it reads the whole store: call it
        from an admin path or a timer, not per request). Findings name no paths and no
        users: inconsistent profiles are counted, not named, so the dict may be shown
        to any client; ``langchain-pad profiles check`` lists them.
        """
        if refresh:
            self.check_integrity()
        last = self._last_check
        findings = list(dict.fromkeys([*self._probe(), *(last.backend if last else [])]))
        if last is not None and last.inconsistent:
            findings.append(
                f"{last.inconsistent} consistency problem(s) in the stored profiles "
                "(`langchain-pad profiles check` lists them)"
            )
        return {
            "ok": not findings,
            "backend": self._backend_name,
            "read_only": self.read_only,
            "findings": findings,
            "checked_at": None if last is None else last.at.isoformat(),
        }

    _backend_name = "custom"
    """What :meth:`health` calls the backend."""

    def _probe(self) -> list[str]:
        """Findings of a cheap look at the store now (a backend's override); no paths."""
        return []


@dataclass(frozen=True)
class _Check:
    """The last full :meth:`BaseProfileStore.check_integrity`, for :meth:`health`."""

    backend: list[str]
    inconsistent: int
    at: datetime


def _reward_model_dir(reward_model: RewardModelSetting) -> Path | None:
    if reward_model is None:
        return None
    from langchain_pad.models import resolve_reward_model

    return Path(resolve_reward_model(str(reward_model))).expanduser()
