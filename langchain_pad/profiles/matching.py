"""Nearest-preference lookup: an in-memory matrix of description embeddings.

Every matchable text (a profile's description and its aliases) is one row of a
normalized float32 matrix. Up to ``exact_rows`` rows (32,768 by default) a query is
one matrix-vector product and an ``argpartition``: exact. Above that, the product
alone reads 150 MB per query at 100,000 x 384, too slow for a shared 2-core machine,
so each row also keeps a 48-byte sign code (one bit per dimension): the query's code
is compared with all codes by Hamming distance (XOR + popcount over 5 MB), the
``candidates`` nearest rows (4,096 by default) are re-scored exactly in float32, and
the best of those are returned. Similarities are always exact; only the choice of
which rows to re-score is approximate (the benchmark reports its recall).

Rows carry their profile's user id; a profile's similarity is that of its best row.
The store keeps the index in step with its contents: appended rows are loaded
incrementally, anything else reloads it.

Each candidate also has a ranking ``score``. For a user profile it is its cosine. The
anchor poles are ranked as a group (:mod:`langchain_pad.profiles.ranking`): every
anchor is a candidate, its score is the best anchor cosine times the ranker's
probability that the query names that anchor, and the anchors pass the threshold
together, on that best cosine. Without the ranker an anchor's score is its cosine too.

The resulting strengths are the score-weighted mean of the top-k profiles' strengths,
over those within ``margin`` of the best score and above ``threshold`` in cosine (below
it, the answer is "no match", never a guess). This is the paper's transfer argument made
concrete: the nearer a known ``w_j``, the more of it the unseen preference gets. Means
are taken like with like: on an axis where the qualifying profiles pull towards
opposite poles, a mean would cancel to a silent zero, so that axis takes the side with
the larger total score (the mean of that side alone) and the result names the axis in
``conflicts``; a query between two opposite poles takes the one the ranker believes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, model_validator

from langchain_pad.profiles.profile import PreferenceProfile

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP_K",
    "EmbeddingIndex",
    "MatchResult",
    "ProfileMatch",
    "combine",
    "rank_matches",
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
    """Cosine of the query and the profile's nearest description row."""
    matched_text: str
    score: float = 0.0  # replaced by ``similarity`` when not given (validator below)
    """What matches are ranked and weighted by: ``similarity`` for a user profile (and
    for an anchor when no ranker ran); for an anchor the ranker ranked, the best anchor
    cosine times ``probability``. Defaults to ``similarity``."""
    probability: float | None = None
    """The ranker's probability that the query names this anchor; None when no ranker
    ran (user profiles, ``rerank=False``, fewer than two anchors)."""

    @model_validator(mode="before")
    @classmethod
    def _score_defaults_to_similarity(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("score") is None and "similarity" in data:
            return {**data, "score": data["similarity"]}
        return data


class MatchResult(BaseModel):
    """What ``store.match(description)`` found."""

    model_config = ConfigDict(frozen=True)

    query: str
    matches: list[ProfileMatch]
    """Nearest profiles, best first (up to ``top_k``): those above the threshold before
    those below it, each group by ``score``."""
    weights: dict[str, float] | None
    """The resulting ``w_p``; None when nothing is above the threshold."""
    used: list[str]
    """User ids whose weights were averaged into ``weights``."""
    threshold: float
    conflicts: list[str] = []
    """Axes on which the used profiles pulled towards opposite poles (the side with the
    larger total score was taken, not the mean)."""

    @property
    def matched(self) -> bool:
        return self.weights is not None

    @property
    def best(self) -> ProfileMatch | None:
        return self.matches[0] if self.matches else None


def _passes(match: ProfileMatch, threshold: float, anchor_similarity: float | None) -> bool:
    """Above the threshold: ranked anchors on the best anchor cosine, the rest on their own."""
    if match.probability is not None and anchor_similarity is not None:
        return anchor_similarity >= threshold
    return match.similarity >= threshold


def rank_matches(
    matches: Sequence[ProfileMatch], *, threshold: float, anchor_similarity: float | None = None
) -> list[ProfileMatch]:
    """Best first: the matches above the threshold, then the rest, each by score.

    ``anchor_similarity`` is the best cosine over all anchors when a ranker scored them
    (the matches with a ``probability``): they pass or fail the threshold together.
    """
    return sorted(
        matches,
        key=lambda m: (
            not _passes(m, threshold, anchor_similarity),
            -m.score,
            -m.similarity,
            m.profile.user_id,
        ),
    )


def combine(
    matches: Sequence[ProfileMatch],
    *,
    threshold: float,
    margin: float,
    anchor_similarity: float | None = None,
) -> tuple[dict[str, float] | None, list[str], list[str]]:
    """Score-weighted mean of the strengths of the matches that qualify; the users used;
    the axes where they pulled opposite ways (module docstring).

    A match qualifies when it is above ``threshold`` (see :func:`rank_matches` for
    ``anchor_similarity``), within ``margin`` of the best qualifying score, and has the
    best one's axes. None when none is above the threshold.
    """
    above = [m for m in matches if _passes(m, threshold, anchor_similarity)]
    if not above:
        return None, [], []
    best = max(above, key=lambda m: m.score)
    axes = best.profile.reward_model.axes
    chosen = [
        m for m in above if m.score >= best.score - margin and m.profile.reward_model.axes == axes
    ]
    chosen.sort(key=lambda m: -m.score)
    scores = [max(m.score, 0.0) for m in chosen]
    total = sum(scores)
    if total <= 0:  # a threshold at or below zero let in nothing but non-positive scores
        scores, total = [1.0] * len(chosen), float(len(chosen))
    weights: dict[str, float] = {}
    conflicts: list[str] = []
    for axis in axes:
        pairs = [(s, m.profile.weights[axis]) for s, m in zip(scores, chosen, strict=True)]
        up = [(s, w) for s, w in pairs if w > 0]
        down = [(s, w) for s, w in pairs if w < 0]
        if up and down:
            conflicts.append(axis)
            side = up if sum(s for s, _ in up) >= sum(s for s, _ in down) else down
            side_total = sum(s for s, _ in side) or float(len(side))
            weights[axis] = sum((s or 1.0) * w for s, w in side) / side_total
        else:
            weights[axis] = sum(s * w for s, w in pairs) / total
    return weights, [m.profile.user_id for m in chosen], conflicts


class EmbeddingIndex:
    """Rows of ``(row id, user id, text, unit vector)``; top-k users by best-row cosine."""

    def __init__(
        self, dim: int | None = None, *, exact_rows: int = 32_768, candidates: int = 4096
    ) -> None:
        self._lock = threading.Lock()
        self._capacity = 0
        self._size = 0
        self.dim = dim
        self.exact_rows = exact_rows
        """Indexes up to this many rows are searched exactly."""
        self.candidates = candidates
        """Rows re-scored exactly after the sign-code prefilter, above ``exact_rows``."""
        self._matrix: npt.NDArray[np.float32] = np.zeros((0, dim or 0), dtype=np.float32)
        self._codes: npt.NDArray[np.uint64] = np.zeros((0, 0), dtype=np.uint64)
        """``[words, capacity]``: word ``i`` of every row's sign code, contiguous."""
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
                codes = np.zeros((_code_words(self.dim), capacity), dtype=np.uint64)
                if self._matrix.shape[1] == self.dim:
                    grown[: self._size] = self._matrix[: self._size]
                    codes[:, : self._size] = self._codes[:, : self._size]
                self._matrix, self._codes, self._capacity = grown, codes, capacity
            self._matrix[self._size : needed] = vectors
            self._codes[:, self._size : needed] = sign_codes(vectors).T
            self._size = needed
            self._users.extend(users)
            self._texts.extend(texts)
            self.max_row_id = max(self.max_row_id, max(row_ids))

    def rows(
        self, keep: Callable[[str], bool] | None = None
    ) -> tuple[list[str], list[str], npt.NDArray[np.float32]]:
        """Copies of the rows whose user ``keep`` accepts: user ids, texts, unit vectors."""
        with self._lock:
            picked = [i for i in range(self._size) if keep is None or keep(self._users[i])]
            dim = self._matrix.shape[1]
            vectors = self._matrix[picked] if picked else np.zeros((0, dim), dtype=np.float32)
            return [self._users[i] for i in picked], [self._texts[i] for i in picked], vectors

    def search(
        self,
        query: npt.NDArray[np.float32],
        top_k: int,
        *,
        keep: Callable[[str], bool] | None = None,
        exact: bool | None = None,
    ) -> list[tuple[str, float, str]]:
        """Best ``top_k`` users as ``(user_id, similarity, matched text)``, best first.

        ``exact`` forces (True) or forbids (False) the exhaustive product; by default
        it is used up to ``exact_rows`` rows.
        """
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
            if exact is None:
                exact = size <= self.exact_rows or size <= self.candidates
            if not exact:
                found = self._search_rows(self._prefiltered(q, size), q, top_k, keep)
                if len(found) == top_k:
                    return found
            rows = np.arange(size)
            return self._search_rows(rows, q, top_k, keep)

    def _prefiltered(self, q: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.intp]:
        """The ``candidates`` rows whose sign codes are nearest the query's."""
        code = sign_codes(q[None, :])[0]
        distance = np.zeros(size, dtype=np.uint16)
        for word in range(code.shape[0]):  # word by word: contiguous, no [size, words] temp
            distance += np.bitwise_count(self._codes[word, :size] ^ code[word])
        count = min(self.candidates, size)
        return np.argpartition(distance, count - 1)[:count]

    def _search_rows(
        self,
        rows: npt.NDArray[np.intp],
        q: npt.NDArray[np.float32],
        top_k: int,
        keep: Callable[[str], bool] | None,
    ) -> list[tuple[str, float, str]]:
        """Exact top users among ``rows`` (the caller holds the lock)."""
        # einsum rather than BLAS: a single-threaded pass is faster than a BLAS
        # matrix-vector product whose threads fight other processes for the cores.
        matrix = self._matrix[rows] if len(rows) < self._size else self._matrix[: self._size]
        sims = np.einsum("ij,j->i", matrix, q)
        users, texts = self._users, self._texts
        size = len(rows)
        # A user may own several rows (aliases): widen the cut until top_k users show up.
        want = min(size, max(4 * top_k, top_k + 16))
        while True:
            if want >= size:
                order = np.argsort(-sims)
            else:
                part = np.argpartition(-sims, want - 1)[:want]
                order = part[np.argsort(-sims[part])]
            best: dict[str, tuple[float, str]] = {}
            for position in order:
                row = int(rows[position])
                user = users[row]
                if keep is not None and not keep(user):
                    continue
                if user not in best:
                    best[user] = (float(sims[position]), texts[row])
                    if len(best) == top_k:
                        break
            if len(best) == top_k or want >= size:
                break
            want = min(size, want * 4)
        return [(user, sim, text) for user, (sim, text) in best.items()]


def _code_words(dim: int) -> int:
    return (dim + 63) // 64


def sign_codes(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.uint64]:
    """One bit per dimension (``v > 0``), packed into ``uint64`` words per row."""
    dim = vectors.shape[1]
    padded = np.zeros((vectors.shape[0], _code_words(dim) * 64), dtype=bool)
    padded[:, :dim] = vectors > 0
    packed = np.packbits(padded, axis=1)
    return np.ascontiguousarray(packed).view(np.uint64)
