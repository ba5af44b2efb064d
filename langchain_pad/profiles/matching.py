"""Nearest-preference lookup: an in-memory matrix of description embeddings.

Every matchable text (a profile's description and its aliases) is one row of a
normalized float32 matrix; a query is one matrix-vector product and an
``argpartition``, so 100,000 rows take milliseconds. Rows carry their profile's user
id; a profile's similarity is that of its best row. The store keeps the index in step
with its contents: appended rows are loaded incrementally, anything else reloads it.

The resulting ``w_p`` is the similarity-weighted mean of the top-k profiles' weights,
over those within ``margin`` of the best and above ``threshold`` (below it, the
answer is "no match", never a guess). This is the paper's transfer argument made
concrete: the nearer a known ``w_j``, the more of it the unseen preference gets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from langchain_pad.profiles.profile import PreferenceProfile

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP_K",
    "EmbeddingIndex",
    "MatchResult",
    "ProfileMatch",
]

DEFAULT_TOP_K = 3
DEFAULT_THRESHOLD = 0.35
"""Cosine similarity below which a description matches nothing (all-MiniLM-L6-v2:
paraphrases of a preference score about 0.45-0.8, unrelated texts below 0.25)."""
DEFAULT_MARGIN = 0.1
"""Profiles further than this below the best match do not contribute to ``w_p``."""


class ProfileMatch(BaseModel):
    """A known profile near the query, with the text of it that matched best."""

    profile: PreferenceProfile
    similarity: float
    matched_text: str


class MatchResult(BaseModel):
    """What ``store.match(description)`` found."""

    model_config = ConfigDict(frozen=True)

    query: str
    matches: list[ProfileMatch]
    """Nearest profiles, best first (up to ``top_k``, any similarity)."""
    weights: dict[str, float] | None
    """The resulting ``w_p``; None when nothing is above the threshold."""
    used: list[str]
    """User ids whose weights were averaged into ``weights``."""
    threshold: float

    @property
    def matched(self) -> bool:
        return self.weights is not None

    @property
    def best(self) -> ProfileMatch | None:
        return self.matches[0] if self.matches else None


def combine(
    matches: Sequence[ProfileMatch], *, threshold: float, margin: float
) -> tuple[dict[str, float] | None, list[str]]:
    """Similarity-weighted mean of the weights of the matches that qualify."""
    if not matches or matches[0].similarity < threshold:
        return None, []
    floor = max(threshold, matches[0].similarity - margin)
    chosen = [m for m in matches if m.similarity >= floor]
    axes = chosen[0].profile.reward_model.axes
    chosen = [m for m in chosen if m.profile.reward_model.axes == axes]
    total = sum(m.similarity for m in chosen)
    weights = {
        axis: sum(m.similarity * m.profile.weights[axis] for m in chosen) / total for axis in axes
    }
    return weights, [m.profile.user_id for m in chosen]


class EmbeddingIndex:
    """Rows of ``(row id, user id, text, unit vector)``; top-k users by best-row cosine."""

    def __init__(self, dim: int | None = None) -> None:
        self._lock = threading.Lock()
        self._capacity = 0
        self._size = 0
        self.dim = dim
        self._matrix: npt.NDArray[np.float32] = np.zeros((0, dim or 0), dtype=np.float32)
        self._users: list[str] = []
        self._texts: list[str] = []
        self.max_row_id = 0
        """Largest row id loaded; rows above it are new."""
        self.epoch: object = None
        """The store's deletion epoch this index was built at; a change means reload."""

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        with self._lock:
            self._size = 0
            self._users, self._texts = [], []
            self.max_row_id = 0

    def add(
        self,
        row_ids: Sequence[int],
        users: Sequence[str],
        texts: Sequence[str],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        """Append rows (ids increasing); vectors are normalized here to be safe."""
        if not row_ids:
            return
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(row_ids), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        with self._lock:
            if self.dim is None or self._size == 0:
                self.dim = vectors.shape[1]
            if vectors.shape[1] != self.dim:
                raise ValueError(
                    f"embedding has {vectors.shape[1]} dimensions, the index {self.dim}: "
                    "descriptions were embedded with different models"
                )
            needed = self._size + len(row_ids)
            if needed > self._capacity or self._matrix.shape[1] != self.dim:
                capacity = max(needed, 2 * self._capacity, 1024)
                grown = np.zeros((capacity, self.dim), dtype=np.float32)
                if self._matrix.shape[1] == self.dim:
                    grown[: self._size] = self._matrix[: self._size]
                self._matrix, self._capacity = grown, capacity
            self._matrix[self._size : needed] = vectors
            self._size = needed
            self._users.extend(users)
            self._texts.extend(texts)
            self.max_row_id = max(self.max_row_id, max(row_ids))

    def search(
        self,
        query: npt.NDArray[np.float32],
        top_k: int,
        *,
        keep: Callable[[str], bool] | None = None,
    ) -> list[tuple[str, float, str]]:
        """Best ``top_k`` users as ``(user_id, similarity, matched text)``, best first."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        with self._lock:
            size = self._size
            if size == 0 or top_k <= 0:
                return []
            if q.shape[0] != self.dim:
                raise ValueError(
                    f"query embedding has {q.shape[0]} dimensions, the index {self.dim}"
                )
            sims = self._matrix[:size] @ q
            users, texts = self._users, self._texts
            # A user may own several rows (aliases): widen the cut until top_k users show up.
            want = min(size, max(4 * top_k, top_k + 16))
            while True:
                if want >= size:
                    order = np.argsort(-sims)
                else:
                    part = np.argpartition(-sims, want - 1)[:want]
                    order = part[np.argsort(-sims[part])]
                best: dict[str, tuple[float, str]] = {}
                for row in order:
                    user = users[int(row)]
                    if keep is not None and not keep(user):
                        continue
                    if user not in best:
                        best[user] = (float(sims[row]), texts[int(row)])
                        if len(best) == top_k:
                            break
                if len(best) == top_k or want >= size:
                    break
                want = min(size, want * 4)
        return [(user, sim, text) for user, (sim, text) in best.items()]
