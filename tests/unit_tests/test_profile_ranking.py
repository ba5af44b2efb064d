"""The anchor ranker."""

from __future__ import annotations

import numpy as np
import pytest

from langchain_pad.profiles.ranking import AnchorRanker

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
    """The numpy application equals scikit-learn's own predict_proba, 2 and 3 anchors."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    for rows in (ROWS, ROWS[:6]):
        users, texts = [u for u, _ in rows], [t for _, t in rows]
        vectors = fake_vectors(len(rows))
        ranker = AnchorRanker(users, texts, vectors)
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
