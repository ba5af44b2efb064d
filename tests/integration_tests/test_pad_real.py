"""PAD on the real embedded model with a deterministic, perturbed (untrained) PersRM.

The trained default PersRM is shipped separately; these tests check the machinery:
exactness of w_p = 0, batching of users, per-token PAD data in LangChain chunks, and
the stage-2 fit on real features.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from langchain_pad import PADChatModel
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.engine.pad import PADGuidance, PADGuide
from langchain_pad.reward_model import PersonalizedRewardModel
from langchain_pad.training import (
    TokenizedPair,
    fit_weights_from_features,
    pair_feature_differences,
    uncertainty_order,
)

AXES = ["expertise", "informativeness", "style"]


@pytest.fixture(scope="module")
def reward_model(loaded) -> PersonalizedRewardModel:
    rm = PersonalizedRewardModel(loaded.model, AXES, beta=1.0, adapted_layers=4)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rm.heads.add_(0.02 * torch.randn(rm.heads.shape, generator=generator))
    return rm


@pytest.fixture(scope="module")
def reward_model_dir(reward_model, tmp_path_factory):
    from langchain_pad.calibration import PoleCalibration, write_calibration

    path = reward_model.save(tmp_path_factory.mktemp("persrm"))
    write_calibration(path, PoleCalibration.uniform(AXES, 4.0))  # strength 1 = raw 4
    return str(path)


def test_zero_weights_equal_plain_decoding_through_the_chat_model(reward_model_dir):
    plain = PADChatModel(max_tokens=24)
    pad = PADChatModel(max_tokens=24, reward_model=reward_model_dir)
    question = "Explain what a black hole is."
    zero = pad.invoke(question, weights={"expertise": 0.0})
    assert zero.content == plain.invoke(question).content
    assert not any(zero.response_metadata["pad"]["changed"])


def test_pad_data_in_every_chunk_and_in_the_merged_message(reward_model_dir):
    pad = PADChatModel(max_tokens=24, reward_model=reward_model_dir)
    weights = {"expertise": 0.75, "style": -0.5}  # raw 3 and -2 (calibration: 4 per pole)
    chunks = list(pad.stream("Explain what a black hole is.", weights=weights))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk  # never raises, whatever the rewards
    pad_data = merged.response_metadata["pad"]
    tokens = merged.usage_metadata["output_tokens"]
    assert all(len(pad_data[key]) == tokens for key in pad_data)
    assert merged.response_metadata["pad_axes"] == AXES
    assert merged.response_metadata["pad_weights"] == {
        "expertise": 3.0,
        "informativeness": 0.0,
        "style": -2.0,
    }
    assert any(pad_data["changed"])
    plain = PADChatModel(max_tokens=24).invoke("Explain what a black hole is.")
    assert merged.content != plain.content


def test_weights_without_a_reward_model_is_a_clear_error():
    with pytest.raises(ValueError, match="pass reward_model="):
        PADChatModel(max_tokens=4, reward_model=None).invoke("hi", weights={"expertise": 1.0})


def test_unknown_axis_is_a_clear_error(reward_model_dir):
    pad = PADChatModel(max_tokens=4, reward_model=reward_model_dir)
    with pytest.raises(ValueError, match="unknown preference axes \\['humour'\\]"):
        pad.invoke("hi", weights={"humour": 1.0})


def test_bound_weights_and_beta(reward_model_dir):
    pad = PADChatModel(max_tokens=16, reward_model=reward_model_dir)
    bound = pad.bind(weights=[0.5, 0.0, 0.0], beta=0.5)  # raw 2
    result = bound.invoke("Name a planet.")
    assert result.response_metadata["pad_beta"] == 0.5
    record_rewards = result.response_metadata["pad"]["reward"]
    features = result.response_metadata["pad"]["features"]
    # tokens the plausibility floor decided are not scored (no reward, no features)
    assert [r is None for r in record_rewards] == [f is None for f in features]
    scored = [(r, f) for r, f in zip(record_rewards, features, strict=True) if r is not None]
    assert scored
    assert [r for r, _ in scored] == pytest.approx([0.5 * 2.0 * f[0] for _, f in scored], abs=1e-4)


def test_batch_of_users_equals_each_user_alone(loaded, chat_ids, reward_model):
    engine = DecodingEngine(
        loaded.model,
        loaded.tokenizer,
        eos_token_ids=loaded.eos_token_ids,
        context_length=loaded.context_length,
    )
    guide = PADGuide(reward_model)
    users = [(3, 0, 0), (-3, 0, 0), (0, 3, 0), (0, 0, -3)]
    prompts = ["What is gravity?", "Describe a cat.", "How do plants grow?", "What is music?"]
    requests = [
        GenerationRequest(chat_ids(p), SamplingParams(24), PADGuidance(w))
        for p, w in zip(prompts, users, strict=True)
    ]
    batched = engine.generate(requests, guide)
    assert engine.last_stats.batch_sizes[0] == 4
    for request, out in zip(requests, batched, strict=True):
        assert out.token_ids == engine.generate([request], guide)[0].token_ids


RESPONSES = {
    "What is gravity?": [
        "Gravity is the force that pulls things toward each other, like an apple to the ground.",
        "Gravitation is spacetime curvature described by general relativity's field equations.",
        "It pulls stuff down.",
        "Gravity! The universe's best hug, keeping our feet happily on the ground.",
    ],
    "How do vaccines work?": [
        "Vaccines teach your body to recognize a germ so it can fight it quickly later.",
        "Vaccines present antigens that prime adaptive immunity, inducing memory B and T cells.",
        "They train immunity.",
        "A vaccine is a friendly wanted poster for germs, so your body knows whom to catch!",
    ],
    "Why is the sea salty?": [
        "Rivers carry tiny bits of salt from rocks into the sea, and the salt stays there.",
        "Dissolved ions from weathered crustal rock and hydrothermal vents accumulate in seawater.",
        "Minerals from rocks.",
        "Because the rocks have been seasoning it for millions of years, like a very slow chef!",
    ],
}


def test_stage2_recovers_a_simulated_user_from_eight_real_pairs(loaded, reward_model):
    pairs = [
        TokenizedPair(
            tuple(
                loaded.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}], add_generation_prompt=True
                )["input_ids"]
            ),
            tuple(loaded.tokenizer(a, add_special_tokens=False)["input_ids"]),
            tuple(loaded.tokenizer(b, add_special_tokens=False)["input_ids"]),
        )
        for prompt, answers in RESPONSES.items()
        for a, b in itertools.combinations(answers, 2)
    ]
    pool = pair_feature_differences(reward_model, pairs)  # [18, 3] real features
    generator = torch.Generator().manual_seed(0)
    hits = 0
    for _ in range(10):
        w_true = torch.randn(3, generator=generator)
        oriented = pool * torch.sign(pool @ w_true).unsqueeze(1)  # the hidden user's labels
        asked = [0, 9]
        while len(asked) < 8:
            w, _ = fit_weights_from_features(oriented[asked], beta=1.0, l2=0.01)
            asked.append(next(i for i in uncertainty_order(oriented, w.tolist()) if i not in asked))
        w, _ = fit_weights_from_features(oriented[asked], beta=1.0, l2=0.01)
        hits += float(w @ w_true / (w.norm() * w_true.norm())) >= 0.9
    assert hits >= 8, f"only {hits}/10 simulated users recovered with cosine >= 0.9"
