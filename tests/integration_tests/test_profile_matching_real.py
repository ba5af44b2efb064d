"""Unseen preference descriptions matched to anchor poles with the real all-MiniLM-L6-v2.

Two stores: one seeded with tests/data/anchors.json (eight poles, style and structure
included), and one with the shipped PersRM's anchors (the four poles of expertise and
informativeness), which is what the default store holds. Six sets of paraphrases,
none stored anywhere:

- the main set: the anchors' aliases were revised while looking at its misses;
- a held-out set, written before the last revision of the aliases and never used for
  it;
- a blind set of the shipped poles, written and committed before any change to the
  matching was evaluated on it, and evaluated once, after the change (the lead runs
  it: ``-k blind``). The ranker (langchain_pad/profiles/ranking.py) was developed on
  the first two only, so their bars are the accuracies measured while developing it
  (rounded down), not independent estimates; the blind set's bar is the target, 0.9;
- polarity sets, wordings whose pole is set by a negation or a contrast ("no need
  to dumb it down", "precision over simplicity"): the first was committed before the
  negation-aware lexical model was evaluated on it and then used to develop it (plain
  n-grams got 11/24, negation scopes alone 14/24, with flipped poles 19/24); the second was
  committed before that development and evaluated after it (plain n-grams 12/24, the
  negation-aware model 21/24). Both cover the shipped poles only. One rule came after
  reading the blind set's misses under the negation-aware model ("Don't ramble." went
  to thorough on the cue word alone): a query is split by the lexical model only when
  it turns down a word the anchors use. It moved the blind set from 62/64 to 63/64
  and left every other set as it was.
- a third polarity set (32 wordings: negations, contrasts, and cue words in forms the
  anchors never use), committed before stemming was added to the lexical model and
  evaluated once, after it, with and without stems: 20/32 stemmed, 17/32 as written.
  The rule was set before that run: keep stems only if they won there, since on the
  sets already read they tied (the blind set 63 -> 64, its one miss "Technical rigor over
  accessibility" being what prompted stems; the first polarity set 19 -> 20; the second
  21 -> 19).
  These wordings are the matcher's weak spot: most of its misses take the wrong axis
  ("Skip the simplifications." -> concise), not only the wrong pole.

Each test prints the accuracy of the default ranking and of cosine alone
(``rerank=False``) for comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_pad.embeddings import SentenceTransformerEmbedder
from langchain_pad.profiles import AnchorSet, InMemoryProfileStore, RewardModelRef, anchor_profiles

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def anchors() -> AnchorSet:
    return AnchorSet.model_validate_json((DATA / "anchors.json").read_text())


@pytest.fixture(scope="module")
def store(anchors, embedder):
    """All eight poles of tests/data/anchors.json."""
    ref = RewardModelRef(id="test-anchors", axes=tuple(anchors.axes))
    return InMemoryProfileStore(embedder=embedder, anchors=anchors.profiles(ref))


@pytest.fixture(scope="module")
def shipped_store(embedder):
    """The shipped PersRM's anchors (langchain_pad/default_persrm/anchors.json)."""
    return InMemoryProfileStore(embedder=embedder, anchors=anchor_profiles("default"))


def paraphrases(name: str) -> list[dict[str, str]]:
    return json.loads((DATA / name).read_text())["paraphrases"]


def accuracy(store, items, *, rerank: bool = True) -> tuple[float, list[str]]:
    misses = []
    for item in items:
        result = store.match(item["text"], kind="anchor", rerank=rerank)
        top = result.best.profile.user_id.removeprefix("anchor:") if result.best else None
        if top != item["anchor"] or not result.matched:
            best = result.best
            misses.append(
                f"{item['text']!r} -> {top} (cosine {best.similarity:.2f}, score {best.score:.2f})"
                if best
                else f"{item['text']!r} -> nothing"
            )
    return 1 - len(misses) / len(items), misses


@pytest.mark.parametrize(
    ("poles", "name", "bar"),
    [
        ("all", "preference_paraphrases.json", 0.93),  # measured 60/64, with negation 61/64
        ("all", "preference_paraphrases_heldout.json", 0.89),  # 43/48, with negation 45/48
        ("shipped", "preference_paraphrases.json", 0.93),  # 30/32, with negation 31/32
        ("shipped", "preference_paraphrases_heldout.json", 0.91),  # 22/24, with negation 24/24
        ("shipped", "preference_paraphrases_blind.json", 0.9),  # target; first run 62/64, 64 now
        ("shipped", "preference_paraphrases_polarity.json", 0.79),  # measured 19/24, 20 stemmed
        ("shipped", "preference_paraphrases_polarity_blind.json", 0.79),  # first 21/24, 19 stemmed
        ("shipped", "preference_paraphrases_polarity_blind2.json", 0.62),  # its one run: 20/32
    ],
    ids=[
        "all-main",
        "all-heldout",
        "shipped-main",
        "shipped-heldout",
        "shipped-blind",
        "shipped-polarity",
        "shipped-polarity-blind",
        "shipped-polarity-blind2",
    ],
)
def test_paraphrases_match_the_right_pole(request, poles, name, bar):
    store = request.getfixturevalue("store" if poles == "all" else "shipped_store")
    names = {p.user_id.removeprefix("anchor:") for p in store.list_profiles(kind="anchor")}
    stored = {t for p in store.list_profiles(kind="anchor") for t in p.descriptions}
    items = [item for item in paraphrases(name) if item["anchor"] in names]
    assert len(items) >= 4 * len(names)
    assert not stored & {item["text"] for item in items}, "paraphrases must be unseen"
    assert {item["anchor"] for item in items} == names
    score, misses = accuracy(store, items)
    cosine, _ = accuracy(store, items, rerank=False)
    print(
        f"{poles} poles, {name}: top-1 pole accuracy {score:.3f} ranked, {cosine:.3f} by "
        f"cosine alone ({len(items)} paraphrases)"
    )
    assert score >= bar, misses


@pytest.mark.parametrize("poles", ["all", "shipped"])
def test_unrelated_text_is_no_match(request, poles):
    store = request.getfixturevalue("store" if poles == "all" else "shipped_store")
    for text in ("What is the capital of France?", "zebra quantum lasagna", "I like pizza"):
        result = store.match(text)
        assert not result.matched, (text, result.best)


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_a_new_store_matches_free_text_out_of_the_box(embedder, tmp_path, backend):
    """No seeding step: a store at an explicit path holds the shipped PersRM's poles."""
    from langchain_pad.profiles import SQLiteProfileStore, default_reward_model_ref

    store = (
        SQLiteProfileStore(tmp_path / "explicit.sqlite3", embedder=embedder)
        if backend == "sqlite"
        else InMemoryProfileStore(embedder=embedder)
    )
    result = store.match("explain it like I'm five")
    assert result.matched and result.best is not None
    assert result.best.profile.user_id == "anchor:expertise:elementary"
    assert result.best.profile.reward_model == default_reward_model_ref()
    assert result.weights is not None and result.weights["expertise"] < 0


def test_feedback_without_a_learner_learns_with_the_shipped_persrm(embedder, tmp_path):
    """``record_feedback`` with no learner builds a stage-2 learner for the store's reward
    model (the real base model and the shipped PersRM) on first use."""
    from langchain_pad.profiles import SQLiteProfileStore, Stage2Learner, default_reward_model_ref

    store = SQLiteProfileStore(tmp_path / "p.sqlite3", embedder=embedder)
    profile = store.record_feedback(
        "ana",
        "Explain gravity.",
        "Gravity pulls things down. An apple falls to the ground.",
        "Gravitation is the curvature of spacetime governed by the Einstein field equations.",
    )
    assert isinstance(store._default_learner, Stage2Learner)
    assert profile.reward_model == default_reward_model_ref()
    assert profile.version == 1 and profile.feedback_count == 1
    (pair,) = store.feedback("ana")
    assert pair.reward_model_id == default_reward_model_ref().id
    assert pair.features is not None and len(pair.features) == 2
    # the pair prefers the simpler answer: the learned expertise weight leans elementary
    assert profile.weights["expertise"] < 0
