"""The anchor ranker, and how the store ranks and weights its matches with it."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from langchain_pad.profiles import InMemoryProfileStore, ProfileMatch
from langchain_pad.profiles.matching import DEFAULT_MARGIN, combine, rank_matches
from langchain_pad.profiles.ranking import AnchorRanker
from langchain_pad.profiles.testing import HashingEmbedder, anchor, user

ROWS = [
    ("anchor:simple", "no jargon please"),
    ("anchor:simple", "avoid jargon and big words"),
    ("anchor:simple", "explain it like I am five"),
    ("anchor:expert", "use the jargon freely"),
    ("anchor:expert", "technical jargon is welcome"),
    ("anchor:expert", "talk to me as a specialist"),
    ("anchor:short", "keep it short"),
    ("anchor:short", "brief answers only"),
]


def fake_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def fitted(rows=ROWS, vectors=None) -> AnchorRanker:
    users = [u for u, _ in rows]
    texts = [t for _, t in rows]
    return AnchorRanker(users, texts, fake_vectors(len(rows)) if vectors is None else vectors)


def test_probabilities_are_the_mean_of_the_two_logistic_regressions():
    """The numpy application equals scikit-learn's own predict_proba, 2 and 3 anchors
    (plain word n-grams: ``negation=False``)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    for rows in (ROWS, ROWS[:6]):
        users, texts = [u for u, _ in rows], [t for _, t in rows]
        vectors = fake_vectors(len(rows))
        ranker = AnchorRanker(users, texts, vectors, negation=False)
        labels = [ranker.anchors.index(u) for u in users]
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        dense = LogisticRegression(C=10, max_iter=2000).fit(unit, labels)
        tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        lexical = LogisticRegression(C=10, max_iter=2000).fit(tfidf.fit_transform(texts), labels)
        for seed, text in enumerate(["no no jargon, I am five", "brief jargon", "zzz unknown"]):
            q = fake_vectors(1, seed=seed + 10)[0]
            want_dense = dense.predict_proba((q / np.linalg.norm(q))[None, :])[0]
            want_lexical = lexical.predict_proba(tfidf.transform([text]))[0]
            got = ranker.probabilities(q, text)
            np.testing.assert_allclose(got, (want_dense + want_lexical) / 2, atol=1e-6)
            np.testing.assert_allclose(ranker.probabilities(q), want_dense, atol=1e-6)
            np.testing.assert_allclose(ranker.probabilities(q, "  "), want_dense, atol=1e-6)
            assert got.sum() == pytest.approx(1.0)


NEGATION_ROWS = [
    ("anchor:expertise:elementary", "feel free to dumb it down"),
    ("anchor:expertise:elementary", "keep it simple"),
    ("anchor:expertise:elementary", "plain everyday words"),
    ("anchor:expertise:expert", "no need to dumb it down"),
    ("anchor:expertise:expert", "precise technical terms"),
    ("anchor:expertise:expert", "talk to me as a specialist"),
    ("anchor:length:short", "keep it short"),
    ("anchor:length:short", "brief answers only"),
    ("anchor:length:long", "long detailed answers"),
    ("anchor:length:long", "cover every detail"),
]


def test_negation_probabilities_match_scikit_learn_on_the_flipped_documents():
    """The lexical model is a logistic regression on the anchors' negation-scoped tokens
    plus, per two-pole axis, each text negated as the other pole's; a query without a
    negation gets the plain mean of the two models."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from langchain_pad.profiles.negation import flipped, negation_tokens

    users, texts = [u for u, _ in NEGATION_ROWS], [t for _, t in NEGATION_ROWS]
    vectors = fake_vectors(len(NEGATION_ROWS))
    ranker = AnchorRanker(users, texts, vectors)
    labels = [ranker.anchors.index(u) for u in users]
    other = {0: 1, 1: 0, 2: 3, 3: 2}  # sorted: elementary, expert, long, short
    docs = [negation_tokens(t) for t in texts] + [flipped(negation_tokens(t)) for t in texts]
    doc_labels = labels + [other[label] for label in labels]

    def grams(tokens: list[str]) -> list[str]:
        return tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]

    tfidf = TfidfVectorizer(analyzer=grams, sublinear_tf=True)
    lexical = LogisticRegression(C=10, max_iter=2000).fit(tfidf.fit_transform(docs), doc_labels)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    dense = LogisticRegression(C=10, max_iter=2000).fit(unit, labels)
    q = fake_vectors(1, seed=3)[0]
    # "don't ramble": a negation of words no anchor uses says nothing about the poles,
    # so it gets the plain mean too, not a split on the cue word alone
    for text in ("simple everyday words please", "don't ramble"):
        want = (
            dense.predict_proba((q / np.linalg.norm(q))[None, :])[0]
            + lexical.predict_proba(tfidf.transform([negation_tokens(text)]))[0]
        ) / 2
        np.testing.assert_allclose(ranker.probabilities(q, text), want, atol=1e-6)


def test_a_negated_wording_names_the_other_pole():
    """The same words turned down ask for the opposite pole of their axis, whatever the
    embedding (random here) says; the axis itself keeps its share."""
    users, texts = [u for u, _ in NEGATION_ROWS], [t for _, t in NEGATION_ROWS]
    ranker = AnchorRanker(users, texts, fake_vectors(len(NEGATION_ROWS)))
    q = fake_vectors(1, seed=5)[0]
    cases = {
        "dumb it down for me": "anchor:expertise:elementary",
        "no need to dumb it down, thanks": "anchor:expertise:expert",
        "don't keep it simple": "anchor:expertise:expert",
        "don't keep it short": "anchor:length:long",
        "precise terms over plain words": "anchor:expertise:expert",
        "plain words rather than precise terms": "anchor:expertise:elementary",
    }
    for text, pole in cases.items():
        probabilities = ranker.probabilities(q, text)
        assert ranker.anchors[int(np.argmax(probabilities))] == pole, (text, probabilities)
        assert probabilities.sum() == pytest.approx(1.0)
    plain = AnchorRanker(users, texts, fake_vectors(len(NEGATION_ROWS)), negation=False)
    misread = [t for t, pole in cases.items() if plain.rank(q, t)[0].user_id != pole]
    assert misread, "the plain word n-grams were expected to misread some negations"


def test_negation_scopes_end_at_punctuation_and_mark_contrasts():
    from langchain_pad.profiles.negation import flipped, negation_tokens

    def tokens(text: str) -> list[str]:
        return negation_tokens(text, stem=False)  # the scopes alone, words as written

    assert tokens("No need to dumb it down, I'm an expert.") == [
        "no", "not_need", "not_to", "not_dumb", "not_it", "not_down", "i'm", "an", "expert",
    ]  # fmt: skip
    assert tokens("Depth rather than brevity") == [
        "depth", "rather", "than", "not_brevity",
    ]  # fmt: skip
    assert tokens("analogies instead of jargon; skip the basics") == [
        "analogies", "instead", "of", "not_jargon", "skip", "not_the", "not_basics",
    ]  # fmt: skip
    assert tokens("I'd rather have formulas") == ["i'd", "rather", "have", "formulas"]
    assert tokens("Thoroughness over brevity \u2014 always") == [
        "thoroughness", "over", "not_brevity", "always",
    ]  # fmt: skip
    assert tokens("I DON'T want a novel") == ["don't", "not_want", "not_novel"]
    assert flipped(["keep", "not_short"]) == ["not_keep", "short"]
    assert tokens("") == []


def test_stems_join_the_forms_of_a_cue_word_in_either_scope():
    from langchain_pad.profiles.negation import negation_tokens

    assert negation_tokens("Technical rigor over accessibility, please.") == [
        "technic", "rigor", "over", "not_access", "pleas",
    ]  # fmt: skip
    assert negation_tokens("make it accessible") == ["make", "it", "access"]
    assert negation_tokens("I DON'T want a novel") == ["don't", "not_want", "not_novel"]
    # cues are read before stemming: "skipping" is no refusal, "skip" is
    assert negation_tokens("skipping details") == ["skip", "detail"]
    assert negation_tokens("skip details") == ["skip", "not_detail"]


def test_a_cue_word_in_another_form_reaches_the_anchor_that_uses_it():
    """The anchors say "accessible" and "rigorous"; the queries "accessibility" and
    "rigor". Every row has the same vector, so only the words can decide."""
    rows = [
        ("anchor:expertise:elementary", "make it accessible"),
        ("anchor:expertise:elementary", "plain words"),
        ("anchor:expertise:expert", "be rigorous"),
        ("anchor:expertise:expert", "precise terms"),
    ]
    users, texts = [u for u, _ in rows], [t for _, t in rows]
    same = np.tile(fake_vectors(1), (len(rows), 1))
    stemmed = AnchorRanker(users, texts, same)
    as_written = AnchorRanker(users, texts, same, stem=False)
    q = same[0]
    for text, pole in [
        ("accessibility, please", "anchor:expertise:elementary"),
        ("rigor over accessibility", "anchor:expertise:expert"),
    ]:
        assert stemmed.rank(q, text)[0].user_id == pole
        # as written, no word of the query is an anchor's: an even split
        assert as_written.probabilities(q, text) == pytest.approx([0.5, 0.5], abs=0.01)


def test_the_lexical_model_reads_cues_the_embedding_misses():
    """Every row has the same vector: only the words tell the anchors apart."""
    same = np.tile(fake_vectors(1), (len(ROWS), 1))
    ranker = fitted(vectors=same)
    q = same[0]
    shares = [sum(u == a for u, _ in ROWS) / len(ROWS) for a in ranker.anchors]
    assert np.allclose(ranker.probabilities(q), shares, atol=0.01)  # the dense model can't tell
    assert ranker.rank(q, "avoid jargon and big words")[0].user_id == "anchor:simple"
    assert ranker.rank(q, "technical jargon, I am a specialist")[0].user_id == "anchor:expert"
    assert ranker.rank(q, "short and brief")[0].user_id == "anchor:short"


def test_rank_gives_every_anchor_its_best_row_and_probability():
    vectors = fake_vectors(len(ROWS))
    ranker = fitted(vectors=vectors)
    ranked = ranker.rank(vectors[4], "technical jargon is welcome")  # an expert row itself
    assert sorted(a.user_id for a in ranked) == sorted(ranker.anchors)
    assert [a.probability for a in ranked] == sorted((a.probability for a in ranked), reverse=True)
    top = ranked[0]
    assert top.user_id == "anchor:expert"
    assert top.text == "technical jargon is welcome" and top.similarity == pytest.approx(1.0)
    for a in ranked:
        rows = [i for i, (u, _) in enumerate(ROWS) if u == a.user_id]
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        sims = unit[rows] @ (vectors[4] / np.linalg.norm(vectors[4]))
        assert a.similarity == pytest.approx(float(sims.max()), abs=1e-6)
        assert a.text == ROWS[rows[int(sims.argmax())]][1]


def test_the_ranker_is_deterministic():
    a, b = fitted(), fitted()
    q = fake_vectors(1, seed=3)[0]
    assert np.array_equal(a.probabilities(q, "brief jargon"), b.probabilities(q, "brief jargon"))


def test_the_ranker_needs_two_anchors_and_aligned_rows():
    with pytest.raises(ValueError, match="at least two anchors"):
        fitted(ROWS[:3])
    with pytest.raises(ValueError, match="one of each"):
        AnchorRanker(["anchor:a", "anchor:b"], ["x"], fake_vectors(2))
    with pytest.raises(ValueError, match="dimensions"):
        fitted().probabilities(np.ones(3, dtype=np.float32))


def test_anchor_texts_without_words_leave_the_dense_model_alone():
    ranker = AnchorRanker(["anchor:a", "anchor:b"], ["!", "?"], fake_vectors(2))
    q = fake_vectors(1, seed=5)[0]
    assert np.array_equal(ranker.probabilities(q, "some words"), ranker.probabilities(q))


# ---------------------------------------------------------------------- combine


def match(user_id: str, similarity: float, probability: float | None = None, score=None, **w):
    profile = (anchor if user_id.startswith("anchor:") else user)(
        user_id.removeprefix("anchor:"), "x", **w
    )
    return ProfileMatch(
        profile=profile,
        similarity=similarity,
        matched_text="x",
        score=score,
        probability=probability,
    )


def test_score_defaults_to_the_similarity():
    assert match("ana", 0.5).score == 0.5


def test_opposite_poles_never_cancel_to_a_silent_zero():
    # opposite poles 0.03 apart in cosine: a mean would cancel them to about zero; the
    # side with the larger score is taken instead, and the axis is named as a conflict
    simple = match("anchor:simple", 0.60, expertise=-1.0)
    expert = match("anchor:expert", 0.57, expertise=1.0)
    weights, used, conflicts = combine([simple, expert], threshold=0.35, margin=DEFAULT_MARGIN)
    assert used == ["anchor:simple", "anchor:expert"]
    assert weights["expertise"] == -1.0 and conflicts == ["expertise"]
    # an axis where they agree is still averaged
    a = match("ana", 0.60, expertise=-1.0, informativeness=0.5)
    b = match("bo", 0.58, expertise=0.4, informativeness=1.0)
    weights, _, conflicts = combine([a, b], threshold=0.35, margin=DEFAULT_MARGIN)
    assert conflicts == ["expertise"] and weights["expertise"] == -1.0
    assert weights["informativeness"] == pytest.approx((0.6 * 0.5 + 0.58 * 1.0) / 1.18)


def test_ranked_anchors_are_weighted_by_score_not_averaged():
    # the ranker is sure it is the expert pole: scores 0.6 * 0.9 and 0.6 * 0.1
    simple = match("anchor:simple", 0.60, 0.1, score=0.06, expertise=-1.0)
    expert = match("anchor:expert", 0.57, 0.9, score=0.54, expertise=1.0)
    weights, used, _ = combine([simple, expert], threshold=0.35, margin=0.1, anchor_similarity=0.6)
    assert used == ["anchor:expert"] and weights["expertise"] == 1.0


def test_ranked_anchors_pass_the_threshold_together_on_the_best_anchor_cosine():
    # the ranker's pick is below the threshold itself; the anchors' best cosine is above
    pick = match("anchor:expert", 0.30, 0.8, score=0.32, expertise=1.0)
    other = match("anchor:simple", 0.40, 0.2, score=0.08, expertise=-1.0)
    lost = match("bob", 0.34, score=0.34, style=1.0)  # a user below the threshold
    ordered = rank_matches([other, lost, pick], threshold=0.35, anchor_similarity=0.40)
    assert [m.profile.user_id for m in ordered] == ["anchor:expert", "anchor:simple", "bob"]
    weights, used, _ = combine(ordered, threshold=0.35, margin=0.1, anchor_similarity=0.40)
    assert used == ["anchor:expert"] and weights["expertise"] == 1.0
    assert combine(ordered, threshold=0.45, margin=0.1, anchor_similarity=0.40) == (None, [], [])


def test_users_and_anchors_compete_on_score():
    near_user = match("ana", 0.58, informativeness=-0.5)
    pole = match("anchor:short", 0.60, 0.95, score=0.57, informativeness=-1.0)
    weights, used, _ = combine(
        rank_matches([pole, near_user], threshold=0.35, anchor_similarity=0.6),
        threshold=0.35,
        margin=0.1,
        anchor_similarity=0.6,
    )
    assert used == ["ana", "anchor:short"]
    assert weights["informativeness"] == pytest.approx((0.58 * -0.5 + 0.57 * -1) / (0.58 + 0.57))


# ---------------------------------------------------------------------- the store

POLES = [
    anchor(
        "expertise:elementary", "explain simply for a child", ["plain words please"], expertise=-1
    ),
    anchor("expertise:expert", "technical depth for a specialist", ["jargon is fine"], expertise=1),
    anchor("informativeness:concise", "short brief answers", ["keep it short"], informativeness=-1),
]


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return super().embed(texts)


def test_match_ranks_every_anchor_and_keeps_the_cosine():
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=POLES)
    result = store.match("please use plain words", top_k=5)
    assert result.best is not None and result.best.profile.user_id == "anchor:expertise:elementary"
    assert len(result.matches) == len(POLES)  # every anchor is a candidate
    best_cosine = max(m.similarity for m in result.matches)
    for m in result.matches:
        assert m.probability is not None
        assert m.score == pytest.approx(best_cosine * m.probability)
    assert sum(m.probability for m in result.matches) == pytest.approx(1.0)
    assert [m.score for m in result.matches] == sorted(m.score for m in result.matches)[::-1]
    plain = store.match("please use plain words", top_k=5, rerank=False)
    assert all(m.probability is None and m.score == m.similarity for m in plain.matches)
    assert {m.profile.user_id: m.similarity for m in plain.matches} == pytest.approx(
        {m.profile.user_id: m.similarity for m in result.matches}
    )
    store.rerank = False
    assert store.match("please use plain words").matches[0].probability is None


def test_users_are_matched_by_cosine_next_to_the_ranked_anchors():
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=POLES)
    store.put(user("ana", "warm friendly tone", style=1.0))
    result = store.match("warm friendly tone")
    assert result.used == ["ana"] and result.best.probability is None
    assert result.best.score == result.best.similarity == pytest.approx(1.0)
    assert all(m.profile.kind == "user" for m in store.match("warm tone", kind="user").matches)
    anchors_only = store.match("warm friendly tone", kind="anchor", top_k=5)
    assert {m.profile.user_id for m in anchors_only.matches} == {p.user_id for p in POLES}


def test_a_vector_alone_is_ranked_by_the_dense_model():
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=POLES)
    vector = store.matcher.query_vector("keep it short")
    ranker = store.anchor_ranker()
    assert ranker is not None
    result = store.match_vector(vector, top_k=5)
    dense = dict(zip(ranker.anchors, ranker.probabilities(vector), strict=True))
    assert {m.profile.user_id: m.probability for m in result.matches} == pytest.approx(dense)


def test_the_ranker_follows_the_anchors():
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=POLES[:1])
    assert store.anchor_ranker() is None  # one anchor: cosine alone
    assert store.match("plain words please").best.probability is None
    store.seed_anchors(POLES)
    first = store.anchor_ranker()
    assert first is not None and len(first.anchors) == 3
    store.put(user("ana", "warm friendly tone"))  # users do not touch it
    assert store.anchor_ranker() is first
    reweighted = POLES[2].model_copy(update={"weights": {"informativeness": -0.75}})
    assert store.seed_anchors([reweighted]) == 1  # a new version, same texts
    assert store.anchor_ranker() is first
    assert store.match("keep it short").weights["informativeness"] == pytest.approx(-0.75)
    reworded = POLES[2].model_copy(update={"aliases": ["keep it short", "tl;dr"]})
    store.seed_anchors([reworded])
    second = store.anchor_ranker()
    assert second is not first and second is not None
    store.delete(POLES[2].user_id)
    third = store.anchor_ranker()
    assert third is not None and len(third.anchors) == 2
    store.delete(POLES[1].user_id)
    assert store.anchor_ranker() is None


def test_matching_is_thread_safe_while_anchors_change():
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=POLES[:2])
    errors: list[BaseException] = []
    stop = threading.Event()

    def matcher() -> None:
        try:
            while not stop.is_set():
                result = store.match("keep it short please", top_k=5)
                assert sum(m.probability or 0 for m in result.matches) <= 1 + 1e-9
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=matcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for i in range(5):
        store.seed_anchors([POLES[2].model_copy(update={"aliases": [f"short {i}"]})])
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.anchor_ranker() is not None and len(store.anchor_ranker().anchors) == 3


def test_query_embeddings_are_cached(monkeypatch):
    embedder = CountingEmbedder()
    store = InMemoryProfileStore(embedder=embedder, anchors=POLES)
    embedder.texts.clear()
    for _ in range(3):
        store.match("keep it short")
    assert embedder.texts == ["keep it short"]
    vector = store.matcher.query_vector("keep it short")
    assert not vector.flags.writeable  # shared: nobody may change it
    store.matcher.query_cache_size = 2
    for text in ("a", "b", "keep it short", "c"):
        store.matcher.query_vector(text)
    embedder.texts.clear()
    store.matcher.query_vector("keep it short")  # recently used: kept
    store.matcher.query_vector("a")  # least recently used: evicted
    assert embedder.texts == ["a"]
