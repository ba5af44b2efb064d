"""Versioned CRUD over a backend's transaction primitive.

A backend supplies storage primitives (read a profile, write one atomically with its
history row, keep description embeddings); :class:`VersionedStore` turns them into
``get``/``put``/``put_many``/``delete``/``history``/``seed_anchors`` so that
versioning, validation and version conflicts behave the same in memory, in SQLite,
in PostgreSQL and in a LangGraph store. Each write is one transaction that reads the
current version first, so read-modify-write is never lost; the description texts are
embedded before the transaction (embedding runs a model) and checked again inside it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_pad.profiles.profile import PreferenceProfile, ProfileVersion, utcnow
from langchain_pad.profiles.protocol import (
    DescriptionRows,
    FeedbackRecord,
    Kind,
    ProfileStoreError,
    Transaction,
    UnknownProfileError,
    VersionConflictError,
    tombstone,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from langchain_pad.embeddings import Embedder

__all__ = ["VersionedStore"]

_T = TypeVar("_T")


class VersionedStore(ABC):
    """Versioned profile reads and writes over a backend's primitives (module doc)."""

    def __init__(self, *, embedder: Embedder | None = None) -> None:
        self._embedder = embedder
        self._space_checked = False

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
    def _description_state(self, anchors_only: bool = False) -> tuple[object, int]:
        """``(epoch, largest row id)``; the epoch changes whenever rows are removed."""

    @abstractmethod
    def _description_rows(self, after_id: int, anchors_only: bool = False) -> DescriptionRows:
        """Rows with id above ``after_id``: ids, user ids, texts, vectors ``[n, dim]``."""

    @abstractmethod
    def _meta(self, key: str) -> str | None: ...

    @abstractmethod
    def _set_meta(self, key: str, value: str) -> None: ...

    @abstractmethod
    def _reembed_all(self, embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]) -> None:
        """Replace every description row's vector (the embedding model changed)."""

    def _backend_integrity(self) -> list[str]:
        """Findings of the backend's own check (SQLite's ``integrity_check``); no paths
        or user ids, so a server may show them."""
        return []

    @property
    def read_only(self) -> bool:
        """The store can be read but not written (a read-only file, ``read_only=True``)."""
        return False

    def _write_refusal(self) -> Exception | None:
        """The error a write would raise now (read-only, damaged), or None; cheap."""
        return None

    def _require_writable(self) -> None:
        """Raise the write refusal before a write does any work (embedding, a model)."""
        refusal = self._write_refusal()
        if refusal is not None:
            raise refusal

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
        if self._write_refusal() is not None:  # read-only or damaged: nothing to write
            if stored is not None and stored != name:
                raise ProfileStoreError(
                    f"this store's descriptions were embedded with {stored!r}, not "
                    f"{name!r}, and it cannot re-embed them ({self._write_refusal()}); "
                    f"open it with the embedder {stored!r}"
                )
            self._space_checked = True
            return
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
        self._require_writable()
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
        self._require_writable()
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
                rows = self._batch_vectors(batch)
            with self._transaction() as txn:
                for profile, profile_rows in zip(batch, rows, strict=True):
                    current = txn.load(profile.user_id)
                    txn.save(
                        self._next_version(profile, current, profile_rows), reason, profile_rows
                    )
        return len(profiles)

    def _batch_vectors(
        self, batch: Sequence[PreferenceProfile]
    ) -> list[list[tuple[str, list[float]]]]:
        """Every description row of ``batch``, embedded in one call."""
        texts = [t for p in batch for t in p.descriptions]
        matrix = self._embed(texts) if texts else None
        rows, offset = [], 0
        for p in batch:
            count = len(p.descriptions)
            block = [] if matrix is None else matrix[offset : offset + count].tolist()
            rows.append(
                [(t, [float(v) for v in vec]) for t, vec in zip(p.descriptions, block, strict=True)]
            )
            offset += count
        return rows

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
            txn.remove(user_id)
            txn.write_history(tombstone(user_id, current.version + 1))

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


def _same_content(a: PreferenceProfile, b: PreferenceProfile) -> bool:
    return (
        a.kind == b.kind
        and a.description == b.description
        and a.aliases == b.aliases
        and a.reward_model == b.reward_model
        and all(math.isclose(a.weights[k], b.weights.get(k, math.nan)) for k in a.weights)
        and set(a.weights) == set(b.weights)
    )
