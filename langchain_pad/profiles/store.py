"""The ``ProfileStore`` protocol, its errors, and the logic every backend shares.

A backend supplies storage primitives (read a profile, write one atomically with its
history row, append feedback, keep description embeddings); :class:`BaseProfileStore`
turns them into the public operations, so versioning, validation, feedback refits and
matching behave the same in memory, in SQLite, and in later backends.

Guarantees every backend must give (``langchain_pad.profiles.testing`` checks them):

- every save makes a new version ``n + 1`` and keeps the previous ones in the history;
  nothing is overwritten without a trace (a delete is a history entry too);
- ``put(..., expected_version=n)`` fails with :class:`VersionConflictError` if another
  writer got there first (optimistic concurrency);
- ``record_feedback`` stores the pair, refits ``w_p`` and saves the new version in one
  transaction: concurrent feedback for the same user is never lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, Field

from langchain_pad.profiles.matching import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    EmbeddingIndex,
    MatchResult,
    ProfileMatch,
    combine,
    rank_matches,
)
from langchain_pad.profiles.profile import (
    ANCHOR_PREFIX,
    PreferenceProfile,
    ProfileVersion,
    RewardModelRef,
    utcnow,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from langchain_pad.embeddings import Embedder
    from langchain_pad.profiles.ranking import AnchorRanker

__all__ = [
    "EXPORT_FORMAT",
    "BaseProfileStore",
    "FeedbackLearner",
    "FeedbackRecord",
    "ProfileStore",
    "ProfileStoreError",
    "UnknownProfileError",
    "VersionConflictError",
]

EXPORT_FORMAT = "langchain-pad-profiles"
_QUERY_CACHE_SIZE = 1024
_T = TypeVar("_T")
Kind = Literal["user", "anchor"]


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
    write lock (it may run a model); ``refit`` runs inside it, so it should be quick."""

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
    def delete(self, user_id: str, version: int) -> None: ...
    def add_feedback(self, record: FeedbackRecord) -> int: ...
    def feedback(self, user_id: str) -> list[FeedbackRecord]: ...


DescriptionRows = tuple[list[int], list[str], list[str], "npt.NDArray[np.float32]"]


class BaseProfileStore(ABC):
    """Public profile-store operations over a backend's primitives (see module doc)."""

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        learner: FeedbackLearner | None = None,
    ) -> None:
        self._embedder = embedder
        self.learner = learner
        self._index = EmbeddingIndex()
        self._index_lock = threading.Lock()
        self._space_checked = False
        self._query_cache: OrderedDict[tuple[str, str], npt.NDArray[np.float32]] = OrderedDict()
        self._query_cache_lock = threading.Lock()
        self.rerank = True
        """Rank the anchor poles with :class:`~langchain_pad.profiles.ranking.AnchorRanker`
        in :meth:`match` (the default); False ranks every profile by cosine alone.
        ``match(..., rerank=...)`` overrides it for one call."""
        self._anchor_generation = 0
        """Bumped by :meth:`refresh_index` whenever the anchors' rows may have changed."""
        self._anchor_rows = 0
        """How many of the index's rows are anchors' (all of them: no user to search)."""
        self._ranker_lock = threading.Lock()
        self._ranker: AnchorRanker | None = None
        self._ranker_generation = -1
        self._ranker_fingerprint = b""

    # ------------------------------------------------------------------ backend primitives

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Transaction]:
        """An exclusive write transaction: all of it is applied, or none of it."""

    @abstractmethod
    def _read(self, user_id: str) -> PreferenceProfile | None: ...

    @abstractmethod
    def _read_many(self, user_ids: Sequence[str]) -> dict[str, PreferenceProfile]: ...

    @abstractmethod
    def _list(self, kind: Kind | None, limit: int | None, offset: int) -> list[PreferenceProfile]:
        """Current profiles ordered by user id."""

    @abstractmethod
    def _count(self, kind: Kind | None) -> int: ...

    @abstractmethod
    def _history(self, user_id: str | None) -> list[ProfileVersion]:
        """History of one user, or of every user when None, ordered by user and version."""

    @abstractmethod
    def _feedback(self, user_id: str | None) -> list[FeedbackRecord]: ...

    @abstractmethod
    def _description_state(self) -> tuple[object, int]:
        """``(epoch, largest row id)``; the epoch changes whenever rows are removed."""

    @abstractmethod
    def _description_rows(self, after_id: int) -> DescriptionRows:
        """Rows with id above ``after_id``: ids, user ids, texts, vectors ``[n, dim]``."""

    @abstractmethod
    def _meta(self, key: str) -> str | None: ...

    @abstractmethod
    def _set_meta(self, key: str, value: str) -> None: ...

    @abstractmethod
    def _reembed_all(self, embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]) -> None:
        """Replace every description row's vector (the embedding model changed)."""

    def _backend_integrity(self) -> list[str]:
        return []

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections; the store is unusable afterwards."""

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ embeddings

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from langchain_pad.embeddings import SentenceTransformerEmbedder

            self._embedder = SentenceTransformerEmbedder()
        return self._embedder

    def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self._check_space()
        return self.embedder.embed(list(texts))

    def _check_space(self) -> None:
        """Descriptions stored under another embedding model are re-embedded once."""
        if self._space_checked:
            return
        name = self.embedder.name
        stored = self._meta("embedding_model")
        if stored is None:
            self._set_meta("embedding_model", name)
        elif stored != name:
            self._reembed_all(self.embedder.embed)
            self._set_meta("embedding_model", name)
        self._space_checked = True

    def _vectors_for(self, profile: PreferenceProfile) -> list[tuple[str, list[float]]]:
        texts = profile.descriptions
        if not texts:
            return []
        matrix = self._embed(texts)
        return [(t, [float(v) for v in row]) for t, row in zip(texts, matrix, strict=True)]

    # ------------------------------------------------------------------ reads

    def get(self, user_id: str) -> PreferenceProfile | None:
        """The current version of a profile, or None."""
        return self._read(user_id)

    def require(self, user_id: str) -> PreferenceProfile:
        """The current version of a profile; :class:`UnknownProfileError` if there is none."""
        profile = self._read(user_id)
        if profile is None:
            raise UnknownProfileError(f"no preference profile is stored for user {user_id!r}")
        return profile

    def list_profiles(
        self, *, kind: Kind | None = None, limit: int | None = None, offset: int = 0
    ) -> list[PreferenceProfile]:
        """Current profiles, ordered by user id (``kind`` filters users or anchors)."""
        return self._list(kind, limit, offset)

    def count(self, *, kind: Kind | None = None) -> int:
        return self._count(kind)

    def history(self, user_id: str) -> list[ProfileVersion]:
        """Every version of a profile, oldest first (deletions included)."""
        return self._history(user_id)

    def feedback(self, user_id: str) -> list[FeedbackRecord]:
        """Every feedback pair a user gave, oldest first."""
        return self._feedback(user_id)

    # ------------------------------------------------------------------ writes

    def put(
        self,
        profile: PreferenceProfile,
        *,
        expected_version: int | None = None,
        reason: str = "put",
    ) -> PreferenceProfile:
        """Save a profile as a new version; returns it as stored (version, times, embedding).

        ``expected_version`` (0 for "must not exist yet") makes the write conditional:
        :class:`VersionConflictError` if the stored version differs. The feedback count
        is the store's, not the caller's.
        """
        before = self._read(profile.user_id)
        same_texts = before is not None and before.descriptions == profile.descriptions
        vectors = None if same_texts else self._vectors_for(profile)
        with self._transaction() as txn:
            current = txn.load(profile.user_id)
            found = current.version if current is not None else 0
            if expected_version is not None and found != expected_version:
                raise VersionConflictError(
                    f"profile {profile.user_id!r} is at version {found}, expected "
                    f"{expected_version}: another writer changed it; re-read and retry"
                )
            if vectors is None and txn.descriptions(profile.user_id) != profile.descriptions:
                vectors = self._vectors_for(profile)  # changed under us since the read
            stored = self._next_version(profile, current, vectors)
            txn.save(stored, reason, vectors)
        return stored

    def put_many(
        self,
        profiles: Sequence[PreferenceProfile],
        *,
        vectors: npt.NDArray[np.float32] | None = None,
        reason: str = "put",
        batch_size: int = 1000,
    ) -> int:
        """Save many profiles quickly: embeddings in batches, one transaction per batch.

        ``vectors`` (``[len(profiles), dim]``, one per profile) skips embedding; each
        profile then gets one description row, its description, with that vector.
        Returns how many profiles were written.
        """
        if vectors is not None and len(vectors) != len(profiles):
            raise ValueError(f"got {len(vectors)} vectors for {len(profiles)} profiles")
        if vectors is not None:
            self._check_space()
        for start in range(0, len(profiles), batch_size):
            batch = profiles[start : start + batch_size]
            if vectors is not None:
                rows: list[list[tuple[str, list[float]]]] = [
                    [(p.description, [float(v) for v in vec])] if p.description.strip() else []
                    for p, vec in zip(batch, vectors[start : start + batch_size], strict=True)
                ]
            else:
                texts = [t for p in batch for t in p.descriptions]
                matrix = self._embed(texts) if texts else None
                rows, offset = [], 0
                for p in batch:
                    count = len(p.descriptions)
                    block = [] if matrix is None else matrix[offset : offset + count].tolist()
                    rows.append(
                        [
                            (t, [float(v) for v in vec])
                            for t, vec in zip(p.descriptions, block, strict=True)
                        ]
                    )
                    offset += count
            with self._transaction() as txn:
                for profile, profile_rows in zip(batch, rows, strict=True):
                    current = txn.load(profile.user_id)
                    txn.save(
                        self._next_version(profile, current, profile_rows), reason, profile_rows
                    )
        return len(profiles)

    def _next_version(
        self,
        profile: PreferenceProfile,
        current: PreferenceProfile | None,
        vectors: Sequence[tuple[str, Sequence[float]]] | None,
        *,
        weights: Mapping[str, float] | None = None,
        feedback_delta: int = 0,
    ) -> PreferenceProfile:
        now = utcnow()
        if vectors is not None:
            embedding = list(vectors[0][1]) if vectors else None
        else:
            embedding = current.embedding if current is not None else profile.embedding
        update: dict[str, Any] = {
            "version": (current.version if current is not None else 0) + 1,
            "created_at": current.created_at if current is not None else now,
            "updated_at": now,
            "feedback_count": (current.feedback_count if current is not None else 0)
            + feedback_delta,
            "embedding": embedding,
        }
        data = profile.model_dump()
        data.update(update)
        if weights is not None:
            data["weights"] = dict(weights)
        return PreferenceProfile.model_validate(data)

    def delete(self, user_id: str) -> None:
        """Remove a profile; its history (and a deletion entry) stays."""
        with self._transaction() as txn:
            current = txn.load(user_id)
            if current is None:
                raise UnknownProfileError(f"no preference profile is stored for user {user_id!r}")
            txn.delete(user_id, current.version + 1)

    def seed_anchors(self, anchors: Sequence[PreferenceProfile]) -> int:
        """Store anchor profiles that are missing or changed; returns how many were written.

        Idempotent: re-seeding the same anchors writes nothing.
        """
        written = 0
        for anchor in anchors:
            if anchor.kind != "anchor":
                raise ValueError(f"{anchor.user_id!r} is not an anchor profile")
            for _attempt in range(3):
                current = self._read(anchor.user_id)
                if current is not None and _same_content(current, anchor):
                    break
                try:
                    self.put(
                        anchor,
                        expected_version=current.version if current else 0,
                        reason="anchor",
                    )
                    written += 1
                    break
                except VersionConflictError:
                    continue  # another process seeded it meanwhile: look again
        return written

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

        The pair's features are computed first (outside the write lock); then, in one
        transaction, the pair is stored, the learner refits the weights over all of the
        user's pairs (warm-started from the current weights) and the profile gets a new
        version. A user without a profile gets one, starting from zero weights.
        """
        if user_id.startswith(ANCHOR_PREFIX):
            raise ProfileStoreError(f"{user_id!r} is an anchor profile; it takes no feedback")
        learner = learner or self.learner
        if learner is None:
            raise ProfileStoreError(
                "record_feedback needs a learner to refit w_p: pass learner= (e.g. "
                "Stage2Learner(reward_model, tokenizer)) to the store or to this call"
            )
        if chosen == rejected:
            raise ValueError("chosen and rejected are the same text: no preference to learn")
        ref = learner.reward_model
        record = FeedbackRecord(
            user_id=user_id,
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            features=learner.features(prompt, chosen, rejected),
            reward_model_id=ref.id,
        )
        with self._transaction() as txn:
            current = txn.load(user_id)
            if current is None:
                base = PreferenceProfile(user_id=user_id, weights={}, reward_model=ref)
            else:
                if current.reward_model.axes != ref.axes:
                    raise ProfileStoreError(
                        f"profile {user_id!r} has axes {list(current.reward_model.axes)} but "
                        f"the learner's reward model has {list(ref.axes)}"
                    )
                base = current.model_copy(update={"reward_model": ref})
            record.profile_version = (current.version if current is not None else 0) + 1
            txn.add_feedback(record)
            weights = learner.refit(base, txn.feedback(user_id))
            stored = self._next_version(base, current, None, weights=weights, feedback_delta=1)
            txn.save(stored, "feedback", None)
        return stored

    # ------------------------------------------------------------------ matching

    def refresh_index(self) -> EmbeddingIndex:
        """Bring the in-memory index up to date with the stored descriptions."""
        with self._index_lock:
            epoch, max_id = self._description_state()
            index = self._index
            if epoch != index.epoch:
                index.clear()
                index.epoch = epoch
                self._anchor_generation += 1
                self._anchor_rows = 0
            if max_id > index.max_row_id:
                ids, users, texts, vectors = self._description_rows(index.max_row_id)
                index.add(ids, users, texts, vectors)
                anchor_rows = sum(1 for user in users if _is_anchor(user))
                if anchor_rows:
                    self._anchor_generation += 1
                    self._anchor_rows += anchor_rows
            return index

    def anchor_ranker(self) -> AnchorRanker | None:
        """The ranker of the stored anchors (None with fewer than two).

        Fitted on first use and again whenever the anchors' texts or vectors change
        (an anchor added, removed, or re-seeded with other wordings); a new version with
        other weights only keeps it, as the ranker reads no weights.
        """
        self.refresh_index()
        return self._current_ranker()

    def _current_ranker(self) -> AnchorRanker | None:
        """:meth:`anchor_ranker` for the index as last refreshed."""
        with self._ranker_lock:
            with self._index_lock:
                generation = self._anchor_generation
                if generation == self._ranker_generation:
                    return self._ranker
                users, texts, vectors = self._index.rows(keep=_is_anchor)
            digest = hashlib.blake2b(digest_size=16)
            for user, text in zip(users, texts, strict=True):
                digest.update(f"{len(user)}:{user}{len(text)}:{text}".encode())
            digest.update(vectors.tobytes())
            fingerprint = digest.digest()
            if fingerprint != self._ranker_fingerprint:
                from langchain_pad.profiles.ranking import AnchorRanker

                self._ranker = AnchorRanker(users, texts, vectors) if len(set(users)) > 1 else None
                self._ranker_fingerprint = fingerprint
            self._ranker_generation = generation
            return self._ranker

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
        """Known profiles nearest to a preference described in words, and their ``w_p``.

        Candidates are the ``top_k`` user profiles nearest in cosine and, when the
        anchors are ranked, every anchor. Ranking (``rerank``, default :attr:`rerank`,
        on): an anchor's ``score`` is the best anchor cosine times the
        :class:`~langchain_pad.profiles.ranking.AnchorRanker`'s probability that the
        description names it; a user profile's score is its cosine. ``rerank=False``
        (or fewer than two anchors): every score is the cosine, as nearest-row search.

        ``weights`` is the score-weighted mean over the best ``top_k`` profiles that
        are above ``threshold`` in cosine (the anchors together, on their best one) and
        within ``margin`` of the best score; None ("no match") when none is above
        ``threshold``. ``kind`` restricts the candidates to users or anchors.
        """
        if not description.strip():
            raise ValueError("match needs a non-empty description")
        query = self._query_vector(description)
        return self.match_vector(
            query,
            query_text=description,
            top_k=top_k,
            threshold=threshold,
            margin=margin,
            kind=kind,
            rerank=rerank,
        )

    def _query_vector(self, text: str) -> npt.NDArray[np.float32]:
        """The embedding of a query, remembered for the last 1,024 distinct texts (a chat
        model matches the same preference text on every call)."""
        key = (self.embedder.name, text)
        with self._query_cache_lock:
            cached = self._query_cache.get(key)
            if cached is not None:
                self._query_cache.move_to_end(key)
                return cached
        vector: npt.NDArray[np.float32] = self._embed([text])[0]
        vector.setflags(write=False)  # shared by every caller of the cache
        with self._query_cache_lock:
            self._query_cache[key] = vector
            while len(self._query_cache) > _QUERY_CACHE_SIZE:
                self._query_cache.popitem(last=False)
        return vector

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
        """:meth:`match` for an already embedded query.

        ``query_text``, when given, must be the text ``query`` embeds: the ranker's
        lexical model reads it. Without it the anchors are ranked by the ranker's dense
        model alone (see :mod:`langchain_pad.profiles.ranking`).
        """
        index = self.refresh_index()
        use_ranker = (self.rerank if rerank is None else rerank) and kind != "user"
        ranker = self._current_ranker() if use_ranker else None
        # (user id, cosine, matched text, score, probability)
        found: list[tuple[str, float, str, float, float | None]] = []
        anchor_similarity: float | None = None
        if ranker is None:
            keep = {"anchor": _is_anchor, "user": _is_user}.get(kind) if kind else None
            for user, sim, text in index.search(query, top_k, keep=keep):
                found.append((user, sim, text, sim, None))
        else:
            if kind is None and len(index) > self._anchor_rows:  # some users to search
                for user, sim, text in index.search(query, top_k, keep=_is_user):
                    found.append((user, sim, text, sim, None))
            ranked = ranker.rank(query, query_text or None)
            anchor_similarity = max(a.similarity for a in ranked)
            for a in ranked:
                score = anchor_similarity * a.probability
                found.append((a.user_id, a.similarity, a.text, score, a.probability))
        profiles = self._read_many([user for user, *_ in found])
        matches = rank_matches(
            [
                ProfileMatch(
                    profile=profiles[user],
                    similarity=sim,
                    matched_text=text,
                    score=score,
                    probability=probability,
                )
                for user, sim, text, score, probability in found
                if user in profiles
            ],
            threshold=threshold,
            anchor_similarity=anchor_similarity,
        )[: max(top_k, 0)]
        weights, used = combine(
            matches, threshold=threshold, margin=margin, anchor_similarity=anchor_similarity
        )
        return MatchResult(
            query=query_text, matches=matches, weights=weights, used=used, threshold=threshold
        )

    # ------------------------------------------------------------------ export / import

    def export_json(self) -> dict[str, Any]:
        """Every profile, its whole history and its feedback, as JSON-ready data."""
        return {
            "format": EXPORT_FORMAT,
            "format_version": 1,
            "embedding_model": self._meta("embedding_model"),
            "exported_at": utcnow().isoformat(),
            "profiles": [p.model_dump(mode="json") for p in self._list(None, None, 0)],
            "history": [h.model_dump(mode="json") for h in self._history(None)],
            "feedback": [f.model_dump(mode="json") for f in self._feedback(None)],
        }

    def import_json(self, data: Mapping[str, Any]) -> int:
        """Load an export. A new user arrives with its history and feedback as they were;
        an existing one gets the imported profile as a new version (reason ``import``)
        and the feedback it lacks. Returns the number of profiles imported."""
        if data.get("format") != EXPORT_FORMAT or data.get("format_version") != 1:
            raise ValueError(
                f"not a langchain-pad profiles export (format {data.get('format')!r}, "
                f"version {data.get('format_version')!r})"
            )
        profiles = [PreferenceProfile.model_validate(p) for p in data.get("profiles", [])]
        history: dict[str, list[ProfileVersion]] = {}
        for item in data.get("history", []):
            entry = ProfileVersion.model_validate(item)
            history.setdefault(entry.user_id, []).append(entry)
        feedback: dict[str, list[FeedbackRecord]] = {}
        for item in data.get("feedback", []):
            record = FeedbackRecord.model_validate(item)
            feedback.setdefault(record.user_id, []).append(record)
        for profile in profiles:
            vectors = self._vectors_for(profile)
            with self._transaction() as txn:
                current = txn.load(profile.user_id)
                known = {_feedback_key(r) for r in txn.feedback(profile.user_id)}
                new_feedback = [
                    r for r in feedback.get(profile.user_id, []) if _feedback_key(r) not in known
                ]
                past = sorted(history.get(profile.user_id, []), key=lambda h: h.version)
                if current is None and past and past[-1].version == profile.version:
                    for entry in past[:-1]:
                        txn.write_history(entry)
                    for record in new_feedback:
                        txn.add_feedback(record.model_copy(update={"id": None}))
                    embedding = list(vectors[0][1]) if vectors else None
                    restored = profile.model_copy(update={"embedding": embedding})
                    txn.save(restored, past[-1].reason, vectors)
                    continue
                version = (current.version if current is not None else 0) + 1
                for record in new_feedback:
                    txn.add_feedback(
                        record.model_copy(update={"id": None, "profile_version": version})
                    )
                stored = self._next_version(
                    profile, current, vectors, feedback_delta=len(new_feedback)
                )
                if current is None:
                    stored = stored.model_copy(update={"feedback_count": len(new_feedback)})
                txn.save(stored, "import", vectors)
        return len(profiles)

    # ------------------------------------------------------------------ integrity

    def check_integrity(self) -> list[str]:
        """Problems found (an empty list means the store is consistent).

        Checks that each profile's history runs 1..version without gaps, that the
        current profile equals its last history entry, and that the feedback count
        equals the stored pairs, each pointing at an existing version.
        """
        problems = self._backend_integrity()
        history: dict[str, list[ProfileVersion]] = {}
        for entry in self._history(None):
            history.setdefault(entry.user_id, []).append(entry)
        feedback: dict[str, list[FeedbackRecord]] = {}
        for record in self._feedback(None):
            feedback.setdefault(record.user_id, []).append(record)
        for profile in self._list(None, None, 0):
            versions = [h.version for h in history.get(profile.user_id, [])]
            if versions != list(range(1, profile.version + 1)):
                problems.append(
                    f"{profile.user_id!r}: history versions {versions[:5]}... do not run "
                    f"1..{profile.version}"
                )
                continue
            last = history[profile.user_id][-1].profile
            if last is None or last.weights != profile.weights:
                problems.append(f"{profile.user_id!r}: current profile differs from its history")
            records = feedback.get(profile.user_id, [])
            if len(records) != profile.feedback_count:
                problems.append(
                    f"{profile.user_id!r}: feedback_count {profile.feedback_count} but "
                    f"{len(records)} pairs stored"
                )
            if any(not 1 <= r.profile_version <= profile.version for r in records):
                problems.append(f"{profile.user_id!r}: feedback points at a missing version")
        return problems

    # ------------------------------------------------------------------ async twins

    async def aget(self, user_id: str) -> PreferenceProfile | None:
        return await asyncio.to_thread(self.get, user_id)

    async def arequire(self, user_id: str) -> PreferenceProfile:
        return await asyncio.to_thread(self.require, user_id)

    async def aput(
        self,
        profile: PreferenceProfile,
        *,
        expected_version: int | None = None,
        reason: str = "put",
    ) -> PreferenceProfile:
        return await asyncio.to_thread(
            self.put, profile, expected_version=expected_version, reason=reason
        )

    async def adelete(self, user_id: str) -> None:
        await asyncio.to_thread(self.delete, user_id)

    async def alist_profiles(
        self, *, kind: Kind | None = None, limit: int | None = None, offset: int = 0
    ) -> list[PreferenceProfile]:
        return await asyncio.to_thread(self.list_profiles, kind=kind, limit=limit, offset=offset)

    async def ahistory(self, user_id: str) -> list[ProfileVersion]:
        return await asyncio.to_thread(self.history, user_id)

    async def afeedback(self, user_id: str) -> list[FeedbackRecord]:
        return await asyncio.to_thread(self.feedback, user_id)

    async def amatch(
        self,
        description: str,
        *,
        top_k: int = DEFAULT_TOP_K,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        kind: Kind | None = None,
        rerank: bool | None = None,
    ) -> MatchResult:
        return await asyncio.to_thread(
            self.match,
            description,
            top_k=top_k,
            threshold=threshold,
            margin=margin,
            kind=kind,
            rerank=rerank,
        )

    async def arecord_feedback(
        self,
        user_id: str,
        prompt: str,
        chosen: str,
        rejected: str,
        *,
        learner: FeedbackLearner | None = None,
    ) -> PreferenceProfile:
        return await asyncio.to_thread(
            self.record_feedback, user_id, prompt, chosen, rejected, learner=learner
        )

    async def aexport_json(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.export_json)

    async def aimport_json(self, data: Mapping[str, Any]) -> int:
        return await asyncio.to_thread(self.import_json, data)


def _is_anchor(user_id: str) -> bool:
    return user_id.startswith(ANCHOR_PREFIX)


def _is_user(user_id: str) -> bool:
    return not user_id.startswith(ANCHOR_PREFIX)


def _same_content(a: PreferenceProfile, b: PreferenceProfile) -> bool:
    return (
        a.kind == b.kind
        and a.description == b.description
        and a.aliases == b.aliases
        and a.reward_model == b.reward_model
        and all(math.isclose(a.weights[k], b.weights.get(k, math.nan)) for k in a.weights)
        and set(a.weights) == set(b.weights)
    )


def _feedback_key(record: FeedbackRecord) -> tuple[str, str, str, str, str]:
    return (
        record.user_id,
        record.prompt,
        record.chosen,
        record.rejected,
        record.created_at.isoformat(),
    )


def iter_chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
