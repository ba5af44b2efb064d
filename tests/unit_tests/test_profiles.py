"""PreferenceProfile validation, anchors files, reward model ids, the embedding index."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from langchain_pad.profiles import (
    MAX_ABS_WEIGHT,
    AnchorSet,
    EmbeddingIndex,
    InMemoryProfileStore,
    PreferenceProfile,
    RewardModelRef,
    load_anchors,
    reward_model_id,
    reward_model_ref,
)
from langchain_pad.profiles.anchors import anchor_profiles
from langchain_pad.profiles.testing import AXES, REWARD_MODEL, HashingEmbedder


def make(**kwargs):
    values = {"user_id": "ana", "weights": {}, "reward_model": REWARD_MODEL}
    values.update(kwargs)
    return PreferenceProfile(**values)


def test_weights_by_name_or_vector_missing_axes_are_zero():
    assert make(weights={"style": 1.0}).weights == {
        "expertise": 0,
        "informativeness": 0,
        "style": 1,
    }
    assert make(weights=[1, -0.5, 0.25]).vector == (1.0, -0.5, 0.25)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"humour": 1.0}, r"unknown preference axes \['humour'\]"),
        ([1.0, 0.5], "got 2 weights but the reward model has 3 axes"),
        ({"style": math.nan}, "weight for axis 'style' is nan; weights must be finite"),
        ({"style": math.inf}, "must be finite"),
        ({"style": 1.5}, r"outside \[-1, 1\]: weights are strengths in pole units"),
        ({"style": "warm"}, "must be a number"),
        ("warm", "must be a dict by axis name or a list"),
    ],
)
def test_bad_weights_say_what_is_wrong(weights, message):
    with pytest.raises(ValueError, match=message):
        make(weights=weights)


@pytest.mark.parametrize("user_id", ["", "   ", "a\x00b"])
def test_user_id_must_be_a_real_string(user_id):
    with pytest.raises(ValueError, match="user_id"):
        make(user_id=user_id)


def test_unicode_user_ids_are_fine():
    assert make(user_id="Zoë 🙂 用户").user_id == "Zoë 🙂 用户"


def test_anchor_ids_are_reserved():
    with pytest.raises(ValueError, match="reserved for anchor profiles"):
        make(user_id="anchor:expertise:expert")
    with pytest.raises(ValueError, match="anchor profiles need a user_id"):
        make(kind="anchor")


def test_embedding_must_be_finite():
    with pytest.raises(ValueError, match="NaN or infinite"):
        make(embedding=[0.1, math.nan])


def test_reward_model_axes_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        RewardModelRef(id="x", axes=("a", "a"))


def test_profile_bound_equals_the_reward_model_bound():
    from langchain_pad.reward_model import MAX_ABS_WEIGHT as RM_MAX

    assert RM_MAX == MAX_ABS_WEIGHT


# ---------------------------------------------------------------- anchors and ids


ANCHORS_JSON = {
    "format_version": 1,
    "axes": list(AXES),
    "anchors": [
        {
            "name": "expertise:elementary",
            "description": "Explain things simply, so a child could understand.",
            "aliases": ["No jargon, please."],
            "weights": {"expertise": -1.0},
        },
        {"name": "style:warm", "description": "Be warm and kind.", "weights": {"style": 1.0}},
    ],
}


def fake_persrm(directory, axes=AXES, weights=b"weights"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "persrm_config.json").write_text(json.dumps({"axes": list(axes)}))
    (directory / "persrm.safetensors").write_bytes(weights)
    return directory


def test_reward_model_id_is_stable_and_content_based(tmp_path):
    a = fake_persrm(tmp_path / "a")
    b = fake_persrm(tmp_path / "b")
    c = fake_persrm(tmp_path / "c", weights=b"other weights")
    assert reward_model_id(a) == reward_model_id(b)
    assert reward_model_id(a) != reward_model_id(c)
    assert len(reward_model_id(a)) == 16
    assert reward_model_ref(a).axes == AXES
    with pytest.raises(FileNotFoundError, match="not a PersRM directory"):
        reward_model_id(tmp_path / "missing")


def test_anchor_profiles_from_a_persrm_directory(tmp_path):
    directory = fake_persrm(tmp_path)
    assert anchor_profiles(directory) == []  # no anchors.json: nothing to seed
    (directory / "anchors.json").write_text(json.dumps(ANCHORS_JSON))
    profiles = anchor_profiles(directory)
    assert [p.user_id for p in profiles] == ["anchor:expertise:elementary", "anchor:style:warm"]
    assert all(p.kind == "anchor" for p in profiles)
    assert profiles[0].descriptions == [
        "Explain things simply, so a child could understand.",
        "No jargon, please.",
    ]
    assert profiles[0].reward_model.id == reward_model_id(directory)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["anchors"][0]["weights"].update(humour=1.0), "unknown axes"),
        (lambda d: d["anchors"].append(dict(d["anchors"][0])), "unique"),
        (lambda d: d["anchors"][0]["weights"].update(expertise=99.0), "within"),
        (lambda d: d.update(format_version=3), "format_version"),
    ],
)
def test_bad_anchor_files_are_refused(tmp_path, change, message):
    data = json.loads(json.dumps(ANCHORS_JSON))
    change(data)
    (tmp_path / "anchors.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_anchors(tmp_path)


def test_anchors_for_another_reward_model_are_refused():
    anchors = AnchorSet.model_validate(ANCHORS_JSON)
    with pytest.raises(ValueError, match="belong to another reward model"):
        anchors.profiles(RewardModelRef(id="x", axes=("expertise", "style")))


def test_store_seeds_from_a_persrm_directory(tmp_path):
    from langchain_pad.profiles import SQLiteProfileStore

    directory = fake_persrm(tmp_path / "rm")
    (directory / "anchors.json").write_text(json.dumps(ANCHORS_JSON))
    path = tmp_path / "p.sqlite3"
    for _ in range(2):  # re-opening seeds nothing new
        store = SQLiteProfileStore(path, embedder=HashingEmbedder(), anchors_from=directory)
        assert store.count(kind="anchor") == 2
        assert all(len(store.history(p.user_id)) == 1 for p in store.list_profiles())
        store.close()


# ---------------------------------------------------------------- index


def test_index_returns_the_best_row_per_user():
    index = EmbeddingIndex()
    vectors = np.eye(4, dtype=np.float32)
    index.add([1, 2, 3, 4], ["a", "a", "b", "c"], ["a1", "a2", "b", "c"], vectors)
    query = np.array([0.1, 0.9, 0.5, 0.0], dtype=np.float32)
    hits = index.search(query, 2)
    assert [h[0] for h in hits] == ["a", "b"]
    assert hits[0][2] == "a2"
    assert index.search(query, 5, keep=lambda u: u != "a")[0][0] == "b"


def test_index_grows_past_its_capacity():
    index = EmbeddingIndex()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    for start in range(0, 3000, 700):
        stop = min(start + 700, 3000)
        ids = list(range(start + 1, stop + 1))
        index.add(ids, [f"u{i}" for i in ids], ["t"] * len(ids), vectors[start:stop])
    assert len(index) == 3000
    assert index.search(vectors[1234], 1)[0][0] == "u1235"


def test_large_index_prefilters_by_sign_code_and_rescores_exactly():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(5000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = EmbeddingIndex(exact_rows=1000, candidates=256)
    ids = list(range(1, 5001))
    index.add(ids, [f"u{i}" for i in ids], [f"t{i}" for i in ids], vectors)
    for row in rng.integers(0, 5000, size=50):
        query = vectors[row] + 0.3 * rng.normal(size=32).astype(np.float32) / np.sqrt(32)
        fast, exact = index.search(query, 3), index.search(query, 3, exact=True)
        assert fast[0][0] == exact[0][0] == f"u{row + 1}"
        normalized = query / np.linalg.norm(query)
        assert fast[0][1] == pytest.approx(float(vectors[row] @ normalized), abs=1e-5)


def test_index_refuses_mixed_dimensions():
    index = EmbeddingIndex()
    index.add([1], ["a"], ["t"], np.ones((1, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="different models"):
        index.add([2], ["b"], ["t"], np.ones((1, 5), dtype=np.float32))


def test_changing_the_embedding_model_reembeds_the_descriptions():
    store = InMemoryProfileStore(embedder=HashingEmbedder(dim=16, name="small"))
    store.put(make(description="warm kind tone"))
    store._embedder = HashingEmbedder(dim=32, name="large")
    store._space_checked = False
    assert store.match("warm kind tone").used == ["ana"]


# ---------------------------------------------------------------- the shipped PersRM


def test_a_profile_belongs_to_the_shipped_persrm_by_default():
    from langchain_pad.profiles import default_reward_model_ref

    ref = default_reward_model_ref()
    assert ref == reward_model_ref("default") and ref.axes == ("expertise", "informativeness")
    assert default_reward_model_ref() is ref  # hashed once
    profile = PreferenceProfile(user_id="ana", weights={"expertise": 1.0})
    assert profile.reward_model == ref
    assert profile.weights == {"expertise": 1.0, "informativeness": 0.0}
    assert profile.vector == (1.0, 0.0)
    with pytest.raises(ValueError, match="unknown preference axes"):
        PreferenceProfile(user_id="ana", weights={"style": 1.0})
    again = PreferenceProfile.model_validate_json(profile.model_dump_json())
    assert again.reward_model == ref


def test_reward_model_ref_follows_the_files(tmp_path):
    directory = fake_persrm(tmp_path / "rm")
    first = reward_model_ref(directory)
    assert reward_model_ref(directory) is first  # cached for unchanged files
    (directory / "persrm.safetensors").write_bytes(b"retrained weights")
    assert reward_model_ref(directory).id != first.id


def test_a_store_at_any_path_matches_with_the_shipped_anchors(tmp_path):
    from langchain_pad.profiles import SQLiteProfileStore

    store = SQLiteProfileStore(tmp_path / "mine.sqlite3", embedder=HashingEmbedder())
    assert store.reward_model_ref == reward_model_ref("default")
    assert store.count(kind="anchor") == 4
    result = store.match("explain it like I'm five")
    assert result.best is not None and result.best.profile.user_id == "anchor:expertise:elementary"
    assert result.weights is not None and result.weights["expertise"] < 0


def test_feedback_without_a_learner_uses_the_stores_reward_model(tmp_path, monkeypatch):
    from langchain_pad.profiles import ProfileStoreError, Stage2Learner
    from langchain_pad.profiles.testing import CountingLearner

    built = []

    def for_reward_model(directory, **kwargs):
        built.append(directory)
        return CountingLearner(reward_model_ref(directory))

    monkeypatch.setattr(Stage2Learner, "for_reward_model", staticmethod(for_reward_model))
    store = InMemoryProfileStore(embedder=HashingEmbedder())
    assert built == []  # built lazily: on the first feedback
    for i in range(2):
        profile = store.record_feedback("ana", f"q{i}", "longer", "short")
    assert built == [store.reward_model_dir]  # once per store
    assert profile.reward_model == reward_model_ref("default") and profile.version == 2
    with pytest.raises(ProfileStoreError, match="no reward model"):
        InMemoryProfileStore(embedder=HashingEmbedder(), reward_model=None).record_feedback(
            "ana", "q", "a", "b"
        )
