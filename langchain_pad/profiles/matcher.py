"""Matching a described preference to stored profiles: the store's search object.

:class:`ProfileMatcher` owns everything ``match`` needs besides storage: the in-process
:class:`~langchain_pad.profiles.matching.EmbeddingIndex` kept in step with the stored
description rows, the :class:`~langchain_pad.profiles.ranking.AnchorRanker` (fitted
again only when the anchors' texts or vectors change), and a cache of query
embeddings. It reads storage through a few callables, so every backend ranks the
same way: a backend with its own nearest-neighbour search (PostgreSQL's HNSW index, a
LangGraph store's semantic search) passes ``search`` for the *user* profiles and
gives the matcher only the anchor rows; the anchors are always ranked here, by the
same ranker, so the same text picks the same pole on every backend.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

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
from langchain_pad.profiles.profile import ANCHOR_PREFIX, PreferenceProfile

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from langchain_pad.profiles.protocol import DescriptionRows, Kind
    from langchain_pad.profiles.ranking import AnchorRanker

__all__ = ["QUERY_CACHE_SIZE", "ProfileMatcher", "UserSearch", "is_anchor", "is_user"]

QUERY_CACHE_SIZE = 1024
"""Distinct query texts whose embeddings a matcher remembers."""

UserSearch = Callable[
    ["npt.NDArray[np.float32]", str, int, "Kind | None"], list[tuple[str, float, str]]
]
"""``(query vector, query text, top_k, kind) -> [(user id, cosine, matched text)]``,
best first, one entry per profile: a backend's own nearest-neighbour search."""


def is_anchor(user_id: str) -> bool:
    return user_id.startswith(ANCHOR_PREFIX)


def is_user(user_id: str) -> bool:
    return not user_id.startswith(ANCHOR_PREFIX)


class ProfileMatcher:
    """Nearest known profiles for a described preference (see the module docstring).

    ``state()`` is ``(epoch, largest row id)`` of the rows ``rows(after_id)`` returns
    (the epoch changes whenever rows are removed); ``read_many`` loads profiles;
    ``embed`` and ``embedding_name`` embed queries. Without ``search`` every profile
    is searched in the in-process index, so ``rows`` must return every row.
    """

    def __init__(
        self,
        *,
        state: Callable[[], tuple[object, int]],
        rows: Callable[[int], DescriptionRows],
        read_many: Callable[[Sequence[str]], dict[str, PreferenceProfile]],
        embed: Callable[[Sequence[str]], npt.NDArray[np.float32]],
        embedding_name: Callable[[], str],
        search: UserSearch | None = None,
        query_cache_size: int = QUERY_CACHE_SIZE,
    ) -> None:
        self._state, self._rows, self._read_many = state, rows, read_many
        self._embed, self._embedding_name, self._search = embed, embedding_name, search
        self.rerank = True
        """Rank the anchor poles with the ranker (the default); False ranks every
        profile by cosine alone. ``match(..., rerank=...)`` overrides it for one call."""
        self.query_cache_size = query_cache_size
        self._index = EmbeddingIndex()
        self._index_lock = threading.Lock()
        self._anchor_generation = 0
        """Bumped by :meth:`refresh` whenever the anchors' rows may have changed."""
        self._anchor_rows = 0
        """How many of the index's rows are anchors'."""
        self._ranker_lock = threading.Lock()
        self._ranker: AnchorRanker | None = None
        self._ranker_generation = -1
        self._ranker_fingerprint = b""
        self._query_cache: OrderedDict[tuple[str, str], npt.NDArray[np.float32]] = OrderedDict()
        self._query_cache_lock = threading.Lock()

    @property
    def anchor_rows(self) -> int:
        """How many anchor rows the index held at its last refresh (a backend's own
        search must look past this many rows to be sure of finding users)."""
        return self._anchor_rows

    # ------------------------------------------------------------------ index and ranker

    def refresh(self) -> EmbeddingIndex:
        """Bring the in-process index up to date with the stored description rows."""
        with self._index_lock:
            epoch, max_id = self._state()
            index = self._index
            if epoch != index.epoch:
                index.clear()
                index.epoch = epoch
                self._anchor_generation += 1
                self._anchor_rows = 0
            if max_id > index.max_row_id:
                ids, users, texts, vectors = self._rows(index.max_row_id)
                index.add(ids, users, texts, vectors)
                anchor_rows = sum(1 for user in users if is_anchor(user))
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
        self.refresh()
        return self._current_ranker()

    def _current_ranker(self) -> AnchorRanker | None:
        """:meth:`anchor_ranker` for the index as last refreshed."""
        with self._ranker_lock:
            with self._index_lock:
                generation = self._anchor_generation
                if generation == self._ranker_generation:
                    return self._ranker
                users, texts, vectors = self._index.rows(keep=is_anchor)
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

    # ------------------------------------------------------------------ queries

    def query_vector(self, text: str) -> npt.NDArray[np.float32]:
        """The embedding of a query, remembered for the last :attr:`query_cache_size`
        distinct texts (a chat model matches the same preference text on every call)."""
        key = (self._embedding_name(), text)
        with self._query_cache_lock:
            cached = self._query_cache.get(key)
            if cached is not None:
                self._query_cache.move_to_end(key)
                return cached
        vector: npt.NDArray[np.float32] = self._embed([text])[0]
        vector.setflags(write=False)  # shared by every caller of the cache
        with self._query_cache_lock:
            self._query_cache[key] = vector
            while len(self._query_cache) > self.query_cache_size:
                self._query_cache.popitem(last=False)
        return vector

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
        return self.match_vector(
            self.query_vector(description),
            query_text=description,
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
        """:meth:`match` for an already embedded query.

        ``query_text``, when given, must be the text ``query`` embeds: the ranker's
        lexical model reads it (and a text-based backend search needs it). Without it
        the anchors are ranked by the ranker's dense model alone (see
        :mod:`langchain_pad.profiles.ranking`).
        """
        index = self.refresh()
        use_ranker = (self.rerank if rerank is None else rerank) and kind != "user"
        ranker = self._current_ranker() if use_ranker else None
        # (user id, cosine, matched text, score, probability)
        found: list[tuple[str, float, str, float, float | None]] = []
        anchor_similarity: float | None = None
        if ranker is None:
            for user, sim, text in self._nearest(index, query, query_text, top_k, kind):
                found.append((user, sim, text, sim, None))
        else:
            if kind is None and (self._search is not None or len(index) > self._anchor_rows):
                for user, sim, text in self._nearest(index, query, query_text, top_k, "user"):
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
        weights, used, conflicts = combine(
            matches, threshold=threshold, margin=margin, anchor_similarity=anchor_similarity
        )
        return MatchResult(
            query=query_text,
            matches=matches,
            weights=weights,
            used=used,
            threshold=threshold,
            conflicts=conflicts,
        )

    def _nearest(
        self,
        index: EmbeddingIndex,
        query: npt.NDArray[np.float32],
        query_text: str,
        top_k: int,
        kind: Kind | None,
    ) -> list[tuple[str, float, str]]:
        """Nearest profiles by cosine: the backend's search, else the in-process index."""
        if self._search is not None:
            return self._search(query, query_text, top_k, kind)
        keep = {"anchor": is_anchor, "user": is_user}.get(kind) if kind else None
        return index.search(query, top_k, keep=keep)
