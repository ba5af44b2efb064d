"""An in-memory profile store: for tests, notebooks and short-lived processes.

Thread-safe (one lock); a write transaction stages its changes and applies them only
when it finishes without an error, so a failed refit leaves nothing half-written.
Everything is lost when the process ends; use :class:`SQLiteProfileStore` to keep it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from langchain_pad.profiles.base import AUTO, BaseProfileStore, RewardModelSetting
from langchain_pad.profiles.matcher import is_anchor
from langchain_pad.profiles.profile import PreferenceProfile, ProfileVersion
from langchain_pad.profiles.protocol import (
    DescriptionRows,
    FeedbackLearner,
    FeedbackRecord,
    Kind,
    history_entry,
)

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder

__all__ = ["InMemoryProfileStore"]

_Row = tuple[int, str, str, list[float]]


class InMemoryProfileStore(BaseProfileStore):
    """Profiles in a dict, with the same guarantees as the persistent stores.

    ```python
    from langchain_pad.profiles import InMemoryProfileStore

    store = InMemoryProfileStore()  # holds the shipped PersRM's anchors
    print(store.match("keep it short, I'm busy").weights)
    ```

    ``reward_model``, ``anchors`` and ``anchors_from`` as for
    :class:`~langchain_pad.profiles.SQLiteProfileStore`.
    """

    _backend_name = "memory"

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        learner: FeedbackLearner | None = None,
        reward_model: RewardModelSetting = "default",
        anchors: Sequence[PreferenceProfile] = (),
        anchors_from: str | Path | None = AUTO,
    ) -> None:
        super().__init__(embedder=embedder, learner=learner, reward_model=reward_model)
        self._lock = threading.RLock()
        self._profiles: dict[str, PreferenceProfile] = {}
        self._history_rows: dict[str, list[ProfileVersion]] = {}
        self._feedback_rows: dict[str, list[FeedbackRecord]] = {}
        self._rows: dict[str, list[_Row]] = {}
        self._all_rows: list[_Row] = []
        self._row_ids = itertools.count(1)
        self._feedback_ids = itertools.count(1)
        self._epoch = 0
        self._meta_values: dict[str, str] = {}
        self._seed_initial(anchors, anchors_from)

    # ------------------------------------------------------------------ transaction

    @contextmanager
    def _transaction(self) -> Iterator[_MemoryTransaction]:
        with self._lock:
            txn = _MemoryTransaction(self)
            yield txn
            txn.apply()

    # ------------------------------------------------------------------ reads

    def _read(self, user_id: str) -> PreferenceProfile | None:
        with self._lock:
            return self._profiles.get(user_id)

    def _read_many(self, user_ids: Sequence[str]) -> dict[str, PreferenceProfile]:
        with self._lock:
            return {u: self._profiles[u] for u in user_ids if u in self._profiles}

    def _list(self, kind: Kind | None, limit: int | None, offset: int) -> list[PreferenceProfile]:
        with self._lock:
            items = [self._profiles[u] for u in sorted(self._profiles)]
        if kind is not None:
            items = [p for p in items if p.kind == kind]
        end = None if limit is None else offset + limit
        return items[offset:end]

    def _count(self, kind: Kind | None) -> int:
        with self._lock:
            return sum(1 for p in self._profiles.values() if kind is None or p.kind == kind)

    def _history(self, user_id: str | None) -> list[ProfileVersion]:
        with self._lock:
            users = sorted(self._history_rows) if user_id is None else [user_id]
            return [h for u in users for h in self._history_rows.get(u, [])]

    def _feedback(self, user_id: str | None) -> list[FeedbackRecord]:
        with self._lock:
            users = sorted(self._feedback_rows) if user_id is None else [user_id]
            return [f for u in users for f in self._feedback_rows.get(u, [])]

    def _description_state(self, anchors_only: bool = False) -> tuple[object, int]:
        with self._lock:
            rows = self._all_rows
            if anchors_only:
                rows = [r for r in rows if is_anchor(r[1])]
            return self._epoch, rows[-1][0] if rows else 0

    def _description_rows(self, after_id: int, anchors_only: bool = False) -> DescriptionRows:
        with self._lock:
            rows = [
                r
                for r in self._all_rows
                if r[0] > after_id and not (anchors_only and not is_anchor(r[1]))
            ]
        vectors = np.array([r[3] for r in rows], dtype=np.float32)
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], vectors

    def _meta(self, key: str) -> str | None:
        return self._meta_values.get(key)

    def _set_meta(self, key: str, value: str) -> None:
        self._meta_values[key] = value

    def _reembed_all(self, embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]) -> None:
        with self._lock:
            if not self._all_rows:
                return
            vectors = embed([r[2] for r in self._all_rows])
            self._all_rows = [
                (r[0], r[1], r[2], [float(v) for v in vec])
                for r, vec in zip(self._all_rows, vectors, strict=True)
            ]
            self._rows = {}
            for row in self._all_rows:
                self._rows.setdefault(row[1], []).append(row)
            self._epoch += 1


class _MemoryTransaction:
    """Stages writes; :meth:`apply` makes them visible all at once."""

    def __init__(self, store: InMemoryProfileStore) -> None:
        self.store = store
        self.profiles: dict[str, PreferenceProfile | None] = {}
        self.history: list[ProfileVersion] = []
        self.new_feedback: list[FeedbackRecord] = []
        self.vectors: dict[str, Sequence[tuple[str, Sequence[float]]]] = {}
        self.features: dict[int, tuple[list[float] | None, str]] = {}
        """Recomputed features (and their reward model) of stored pairs, by pair id."""

    def load(self, user_id: str) -> PreferenceProfile | None:
        if user_id in self.profiles:
            return self.profiles[user_id]
        return self.store._profiles.get(user_id)

    def descriptions(self, user_id: str) -> list[str]:
        if user_id in self.vectors:
            return [t for t, _ in self.vectors[user_id]]
        return [r[2] for r in self.store._rows.get(user_id, [])]

    def save(
        self,
        profile: PreferenceProfile,
        reason: str,
        vectors: Sequence[tuple[str, Sequence[float]]] | None,
    ) -> None:
        self.profiles[profile.user_id] = profile
        self.write_history(history_entry(profile, reason))
        if vectors is not None:
            self.vectors[profile.user_id] = vectors

    def write_history(self, entry: ProfileVersion) -> None:
        self.history.append(entry)

    def remove(self, user_id: str) -> None:
        self.profiles[user_id] = None
        self.vectors[user_id] = []

    def add_feedback(self, record: FeedbackRecord) -> int:
        record = record.model_copy(update={"id": next(self.store._feedback_ids)})
        self.new_feedback.append(record)
        return record.id or 0

    def feedback(self, user_id: str) -> list[FeedbackRecord]:
        staged = [r for r in self.new_feedback if r.user_id == user_id]
        stored = [self._updated(r) for r in self.store._feedback_rows.get(user_id, [])]
        return stored + staged

    def set_features(
        self, record: FeedbackRecord, features: list[float] | None, reward_model_id: str
    ) -> None:
        self.features[record.id or 0] = (features, reward_model_id)

    def _updated(self, record: FeedbackRecord) -> FeedbackRecord:
        change = self.features.get(record.id or 0)
        if change is None:
            return record
        return record.model_copy(update={"features": change[0], "reward_model_id": change[1]})

    def apply(self) -> None:
        s = self.store
        for user_id, profile in self.profiles.items():
            if profile is None:
                s._profiles.pop(user_id, None)
            else:
                s._profiles[user_id] = profile
        for entry in self.history:
            s._history_rows.setdefault(entry.user_id, []).append(entry)
        if self.features:
            for user_id, records in s._feedback_rows.items():
                s._feedback_rows[user_id] = [self._updated(r) for r in records]
        for record in self.new_feedback:
            s._feedback_rows.setdefault(record.user_id, []).append(record)
        for user_id, vectors in self.vectors.items():
            if s._rows.get(user_id):
                s._all_rows = [r for r in s._all_rows if r[1] != user_id]
                s._epoch += 1
            rows = [(next(s._row_ids), user_id, t, list(v)) for t, v in vectors]
            s._rows[user_id] = rows
            s._all_rows.extend(rows)
