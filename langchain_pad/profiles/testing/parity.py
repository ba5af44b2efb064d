"""Contract tests for what must be the same on every backend: the reward model's
anchors are seeded whatever the store's location, anchors rank as in the in-memory
reference, and feedback runs no model inside the write transaction."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_pad.profiles.backends.memory import InMemoryProfileStore
from langchain_pad.profiles.base import BaseProfileStore
from langchain_pad.profiles.matching import MatchResult
from langchain_pad.profiles.profile import PreferenceProfile, RewardModelRef
from langchain_pad.profiles.protocol import FeedbackRecord, Kind, Transaction
from langchain_pad.profiles.testing.fakes import (
    AXES,
    HashingEmbedder,
    anchor,
    fake_persrm,
    user,
)

__all__ = ["PARITY_ANCHORS", "PARITY_QUERIES", "ParityContract", "WatchingLearner"]

PARITY_ANCHORS = (
    anchor(
        "expertise:elementary",
        "explain simply for a child",
        ["plain words please", "no jargon at all", "like I am five"],
        expertise=-1.0,
    ),
    anchor(
        "expertise:expert",
        "technical depth for a specialist",
        ["use the proper jargon", "expert level detail", "assume I know the field"],
        expertise=1.0,
    ),
    anchor(
        "informativeness:concise",
        "short brief answers",
        ["keep it short", "bottom line first", "no long explanations"],
        informativeness=-1.0,
    ),
    anchor(
        "style:warm",
        "friendly warm kind tone",
        ["be nice to me", "cheerful and kind", "a warm voice"],
        style=1.0,
    ),
)
PARITY_QUERIES = (
    "plain words for a child please",
    "no jargon, keep it short",
    "use the proper jargon, I know the field",
    "be kind and cheerful",
    "explain it like I am five",
    "bottom line first, no long explanations",
    "expert detail but in a warm voice",
)


def ranked_anchors(result: MatchResult) -> list[tuple[str, float | None]]:
    """The anchors of a match, best first, with the ranker's probability."""
    return [
        (m.profile.user_id, m.probability) for m in result.matches if m.profile.kind == "anchor"
    ]


class WatchingLearner:
    """A fake stage-2 learner that records whether a write transaction was open at each
    ``features`` call (see :meth:`ParityContract.watch`); features encode ``offset``."""

    def __init__(self, ref: RewardModelRef, offset: float, open_transactions: list[int]) -> None:
        self._ref, self.offset, self._open = ref, offset, open_transactions
        self.calls: list[tuple[str, bool]] = []

    @property
    def reward_model(self) -> RewardModelRef:
        return self._ref

    def features(self, prompt: str, chosen: str, rejected: str) -> list[float] | None:
        self.calls.append((prompt, bool(self._open)))
        return [self.offset + len(chosen) - len(rejected)] + [0.0] * (len(AXES) - 1)

    def refit(
        self, profile: PreferenceProfile, feedback: Sequence[FeedbackRecord]
    ) -> Mapping[str, float]:
        assert all(r.reward_model_id == self._ref.id and r.features for r in feedback)
        total = sum(r.features[0] for r in feedback if r.features)
        return {**profile.weights, AXES[0]: max(-1.0, min(1.0, total / 500))}


class ParityContract:
    """Mixed into :class:`~langchain_pad.profiles.testing.ProfileStoreContract`."""

    if TYPE_CHECKING:  # provided by the contract it is mixed into

        def store(self, tmp_path: Path, **kwargs: Any) -> BaseProfileStore: ...

    # ------------------------------------------------------------------ reward model

    def test_seeds_the_anchors_of_its_reward_model(self, tmp_path: Path) -> None:
        from langchain_pad.profiles.anchors import reward_model_ref

        directory = fake_persrm(tmp_path / "rm", PARITY_ANCHORS)
        for _ in range(2):  # opening again seeds nothing new
            store = self.store(tmp_path / "store", reward_model=directory)
            assert store.reward_model_ref == reward_model_ref(directory)
            assert store.count(kind="anchor") == len(PARITY_ANCHORS)
            assert all(len(store.history(a.user_id)) == 1 for a in PARITY_ANCHORS)
            best = store.match("plain words for a child please").best
            assert best is not None and best.profile.user_id == "anchor:expertise:elementary"
            assert best.profile.reward_model == reward_model_ref(directory)
        unseeded = self.store(tmp_path / "other", reward_model=directory, anchors_from=None)
        assert unseeded.count() == 0 and unseeded.reward_model_ref is not None
        bare = self.store(tmp_path / "bare", reward_model=None)
        assert bare.count() == 0 and bare.reward_model_ref is None

    def test_the_shipped_reward_model_is_the_default(self, tmp_path: Path) -> None:
        from langchain_pad.profiles.anchors import default_reward_model_ref

        store = self.store(tmp_path, reward_model="default")
        assert store.reward_model_ref == default_reward_model_ref()
        result = store.match("explain it like I'm five")
        assert result.best is not None
        assert result.best.profile.user_id == "anchor:expertise:elementary"
        assert result.weights is not None and result.weights["expertise"] < 0
        assert result.best.profile.reward_model == default_reward_model_ref()

    # ------------------------------------------------------------------ ranking parity

    def test_anchors_rank_as_in_the_reference_store(self, tmp_path: Path) -> None:
        reference = InMemoryProfileStore(
            embedder=HashingEmbedder(), reward_model=None, anchors=PARITY_ANCHORS
        )
        store = self.store(tmp_path, anchors=PARITY_ANCHORS)
        for target in (reference, store):
            target.put(user("ana", "short brief answers in a kind tone", style=1.0))
            target.put(user("bo", "technical depth", expertise=1.0))
        for query in PARITY_QUERIES:
            kind: Kind | None
            for kind in ("anchor", None):
                want = reference.match(query, top_k=8, kind=kind)
                got = store.match(query, top_k=8, kind=kind)
                expected, found = ranked_anchors(want), ranked_anchors(got)
                assert [u for u, _ in found] == [u for u, _ in expected], (query, kind)
                for (_, p), (_, q) in zip(found, expected, strict=True):
                    assert p is not None and q is not None and math.isclose(p, q, abs_tol=1e-6)
                assert got.used == want.used, (query, kind)
            # Cosine alone (rerank=False) is each backend's own nearest-neighbour search:
            # approximate on an HNSW index (PostgreSQL, LangGraph's PostgresStore, which
            # also filters its namespaces after the index scan, so it may return fewer
            # rows). Measured on these queries: the same best anchor, not always the same
            # tail; so only the best one is pinned.
            want = reference.match(query, top_k=8, kind="anchor", rerank=False)
            got = store.match(query, top_k=8, kind="anchor", rerank=False)
            assert ranked_anchors(got)[:1] == ranked_anchors(want)[:1], query

    # ------------------------------------------------------------------ feedback

    @staticmethod
    @contextmanager
    def watch(store: BaseProfileStore, open_transactions: list[int]) -> Iterator[None]:
        """Count the store's open write transactions in ``open_transactions``."""
        original = store._transaction

        @contextmanager
        def watched() -> Iterator[Transaction]:
            with original() as txn:
                open_transactions.append(1)
                try:
                    yield txn
                finally:
                    open_transactions.pop()

        store._transaction = watched  # type: ignore[method-assign]
        try:
            yield
        finally:
            del store._transaction

    def test_feedback_runs_no_model_inside_the_write_transaction(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        open_transactions: list[int] = []
        old = WatchingLearner(RewardModelRef(id="rm-old", axes=AXES), 1000.0, open_transactions)
        new = WatchingLearner(RewardModelRef(id="rm-new", axes=AXES), 0.0, open_transactions)
        with self.watch(store, open_transactions):
            for i in range(2):
                store.record_feedback("ana", f"q{i}", "longer answer", "short", learner=old)
            # the new PersRM recomputes the two old pairs' features, outside the transaction
            profile = store.record_feedback("ana", "q2", "longer", "short", learner=new)
            assert sorted(p for p, _ in new.calls) == ["q0", "q1", "q2"]
            assert all(not inside for _, inside in old.calls + new.calls)
            # ... and keeps them: the next refit computes only the new pair's
            store.record_feedback("ana", "q3", "longer", "short", learner=new)
        assert [p for p, _ in new.calls][3:] == ["q3"]
        assert profile.reward_model.id == "rm-new" and profile.feedback_count == 3
        pairs = store.feedback("ana")
        assert [p.reward_model_id for p in pairs] == ["rm-new"] * 4
        assert all(p.features is not None and p.features[0] < 1000 for p in pairs)
        assert store.check_integrity() == []
