"""Learning a profile from feedback with the real stage-2 fit on a tiny reward model."""

from __future__ import annotations

import torch

from langchain_pad.profiles import InMemoryProfileStore, SQLiteProfileStore, Stage2Learner
from langchain_pad.profiles.testing import HashingEmbedder, user

from .test_reward_model import AXES, perturbed
from .test_training import cosine


class CountingStage2(Stage2Learner):
    feature_calls = 0

    def features(self, prompt, chosen, rejected):
        self.feature_calls += 1
        return super().features(prompt, chosen, rejected)


def hidden_user_pairs(rm, tokenizer, w_true, count=8):
    """Pairs labelled by a simulated user who prefers the higher ``w_true . F``."""
    from langchain_pad.training.pairs import PreferencePair
    from langchain_pad.training.stage2 import pair_feature_differences

    generator = torch.Generator().manual_seed(3)
    pairs = []
    for i in range(count):
        a, b = (
            bytes(torch.randint(97, 123, (10,), generator=generator).tolist()).decode()
            for _ in "ab"
        )
        d = pair_feature_differences(rm, [PreferencePair(f"q{i}", a, b)], tokenizer)[0]
        pairs.append((f"q{i}", a, b) if float(w_true @ d) > 0 else (f"q{i}", b, a))
    return pairs


def test_eight_feedback_pairs_recover_a_hidden_preference(tiny_model, byte_tokenizer, tmp_path):
    rm = perturbed(tiny_model, scale=0.5)
    learner = CountingStage2(rm, byte_tokenizer, l2=0.01)
    store = SQLiteProfileStore(tmp_path / "p.sqlite3", embedder=HashingEmbedder(), learner=learner)
    w_true = torch.tensor([1.0, -1.0, 0.5])
    pairs = hidden_user_pairs(rm, byte_tokenizer, w_true)
    versions = [store.record_feedback("ana", *pair) for pair in pairs]
    assert [p.version for p in versions] == list(range(1, 9))
    final = store.require("ana")
    assert list(final.weights) == AXES
    assert final.reward_model.id == learner.reward_model.id
    assert cosine(final.vector, w_true) >= 0.8  # 8 random pairs: near, not exact
    # the store's incremental, warm-started refit lands where one stage-2 fit does
    from langchain_pad.training import PreferencePair, fit_preference_weights

    direct = fit_preference_weights(
        rm, [PreferencePair(*p) for p in pairs], tokenizer=byte_tokenizer, l2=0.01
    )
    # (stored as strengths: the fit's tanh(beta * w * mean|D| / 2), see profiles.feedback)
    from langchain_pad.training.stage2 import pair_feature_differences

    differences = pair_feature_differences(rm, [PreferencePair(*p) for p in pairs], byte_tokenizer)
    spread = torch.as_tensor(differences).abs().mean(dim=0)
    expected = torch.tanh(rm.beta * torch.tensor(direct.vector) * spread / 2)
    assert torch.allclose(torch.tensor(final.vector), expected.float(), atol=0.05)
    # each pair's features were computed once; refits reuse the stored ones
    assert learner.feature_calls == 8
    history = store.history("ana")
    assert [h.version for h in history] == list(range(1, 9))
    assert all(h.profile is not None and h.profile.feedback_count == h.version for h in history)
    assert len({h.profile.vector for h in history if h.profile}) == 8  # every step moved w_p


def test_a_warm_started_refit_reaches_the_same_optimum(tiny_model, byte_tokenizer):
    from langchain_pad.profiles.store import FeedbackRecord

    rm = perturbed(tiny_model, scale=0.5)
    learner = Stage2Learner(rm, byte_tokenizer, l2=1e3)
    store = InMemoryProfileStore(embedder=HashingEmbedder())
    stored = store.put(user("x", expertise=0.75))
    profile = stored.model_copy(update={"reward_model": learner.reward_model})
    record = FeedbackRecord(
        user_id="x",
        prompt="q",
        chosen="abc",
        rejected="xyz",
        features=[1.0, 0.0, 0.0],
        reward_model_id=learner.reward_model.id,
    )
    warm = learner.refit(profile, [record])
    cold = learner.refit(profile.model_copy(update={"weights": dict.fromkeys(AXES, 0.0)}), [record])
    assert set(warm) == set(AXES)
    # the optimum is the same; L-BFGS from the current weights reaches it as well
    assert abs(warm["expertise"] - cold["expertise"]) < 1e-3


def test_learner_takes_the_saved_reward_model_id(tiny_model, byte_tokenizer, tmp_path):
    from langchain_pad.profiles import reward_model_id

    rm = perturbed(tiny_model)
    rm.save(tmp_path)
    learner = Stage2Learner(rm, byte_tokenizer, reward_model_dir=tmp_path)
    assert learner.reward_model.id == reward_model_id(tmp_path)
    assert list(learner.reward_model.axes) == AXES


def test_the_fit_is_stored_as_strengths_in_pole_units(tiny_model, byte_tokenizer):
    import math

    from langchain_pad.profiles.store import FeedbackRecord

    rm = perturbed(tiny_model, scale=0.5)
    raw = Stage2Learner(rm, byte_tokenizer, l2=0.1, steering=None)
    steered = Stage2Learner(rm, byte_tokenizer, l2=0.1)
    profile = user("x").model_copy(update={"reward_model": raw.reward_model})
    records = [
        FeedbackRecord(
            user_id="x",
            prompt=f"q{i}",
            chosen="a",
            rejected="b",
            features=f,
            reward_model_id=raw.reward_model.id,
        )
        for i, f in enumerate([[60.0, -40.0, 5.0], [80.0, -20.0, -5.0], [40.0, -60.0, 0.0]])
    ]
    fit = Stage2Learner(rm, byte_tokenizer, l2=0.1, steering=None)
    w = steered.refit(profile, records)
    # consistent pairs: near the pole, never past it, signs of the fit
    assert 0.9 < w["expertise"] <= 1.0
    assert -1.0 <= w["informativeness"] < -0.9
    assert abs(w["style"]) < 0.5  # the pairs disagree on style: stays small
    # the share of the pole is the fit's tanh(beta * w * mean|D| / 2)
    import torch

    from langchain_pad.training.stage2 import fit_weights_from_features

    differences = torch.tensor([r.features for r in records])
    raw_fit, _ = fit_weights_from_features(differences, beta=rm.beta, l2=0.1, init=[0.0] * 3)
    for i, axis in enumerate(AXES):
        spread = float(differences[:, i].abs().mean())
        share = math.tanh(rm.beta * float(raw_fit[i]) * spread / 2)
        assert math.isclose(w[axis], share, rel_tol=1e-3, abs_tol=1e-4)
    # a warm start from the stored strengths reaches the same optimum
    again = steered.refit(profile.model_copy(update={"weights": w}), records)
    assert all(math.isclose(again[a], w[a], rel_tol=1e-3, abs_tol=1e-4) for a in AXES)
    # steering=None keeps the raw fit, clamped into the strength range
    assert all(-1.0 <= v <= 1.0 for v in fit.refit(profile, records).values())


def test_bad_steering_is_refused(tiny_model, byte_tokenizer):
    import pytest

    rm = perturbed(tiny_model)
    with pytest.raises(ValueError, match="steering must be 'poles' or None"):
        Stage2Learner(rm, byte_tokenizer, steering="strong")
    assert Stage2Learner(rm, byte_tokenizer, steering="anchors").steering == "poles"  # old name


def test_contrast_weights_push_one_axis_to_each_pole():
    import pytest

    from langchain_pad.profiles import contrast_weights

    low, high = contrast_weights({"expertise": 0.5, "informativeness": -0.5}, "expertise", 1.0)
    assert low == {"expertise": -1.0, "informativeness": -0.5}
    assert high == {"expertise": 1.0, "informativeness": -0.5}
    with pytest.raises(ValueError, match="unknown axis 'style'"):
        contrast_weights({"expertise": 0.0}, "style", 4.0)
    with pytest.raises(ValueError, match="magnitude must be a finite number > 0"):
        contrast_weights({"expertise": 0.0}, "expertise", float("nan"))
