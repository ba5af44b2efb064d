"""Stage 1 (adapter + heads) and stage 2 (w_p) training on a tiny random Llama."""

from __future__ import annotations

import pytest
import torch

from langchain_pad.reward_model import PersonalizedRewardModel
from langchain_pad.training import (
    PreferencePair,
    Stage1Config,
    TokenizedPair,
    fit_preference_weights,
    fit_weights_from_features,
    pad_loss,
    train_stage1,
    uncertainty_order,
)

from .test_reward_model import AXES, perturbed


def cosine(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return float(a @ b / (a.norm() * b.norm()))


def test_pad_loss_matches_the_paper_equation():
    chosen, rejected = torch.tensor([0.5, 0.25]), torch.tensor([-0.25])
    expected = -torch.nn.functional.logsigmoid(torch.tensor(2.0 * (0.75 + 0.25)))
    assert pad_loss(chosen, rejected, beta=2.0) == pytest.approx(float(expected))


# ---------------------------------------------------------------- stage 2


def simulated_users(count: int, pool_size: int = 64):
    generator = torch.Generator().manual_seed(0)
    for _ in range(count):
        w_true = torch.randn(3, generator=generator)
        pool = torch.randn(pool_size, 3, generator=generator) * 5  # F(a) - F(b) of candidate pairs
        signs = torch.sign(pool @ w_true)  # the hidden user prefers the higher w_true . F
        yield w_true, pool * signs.unsqueeze(1)  # oriented: chosen minus rejected


def test_stage2_from_eight_random_pairs():
    cosines = []
    for w_true, oriented in simulated_users(60):
        w, _ = fit_weights_from_features(oriented[:8], beta=1.0, l2=0.01)
        cosines.append(cosine(w, w_true))
    cosines.sort()
    # 8 random binary labels in 3-D: a typical user is recovered, not every user
    assert cosines[len(cosines) // 2] >= 0.9
    assert sum(c >= 0.9 for c in cosines) >= 0.6 * len(cosines)


def test_stage2_from_eight_informative_pairs_recovers_every_user():
    cosines = []
    for w_true, oriented in simulated_users(60):
        asked = [0, 1]
        for _ in range(6):
            w, _ = fit_weights_from_features(oriented[asked], beta=1.0, l2=0.01)
            asked.append(next(i for i in uncertainty_order(oriented, w.tolist()) if i not in asked))
        w, _ = fit_weights_from_features(oriented[asked], beta=1.0, l2=0.01)
        cosines.append(cosine(w, w_true))
    assert len(asked) == 8
    assert sum(c >= 0.9 for c in cosines) >= 0.95 * len(cosines)


def test_stage2_regularization_keeps_weights_small_with_one_pair():
    w, _ = fit_weights_from_features(torch.tensor([[100.0, 0.0, 0.0]]), beta=1.0, l2=0.1)
    assert 0 < w[0] < 1 and w[1] == 0


def test_stage2_warm_start_must_match_the_axes():
    with pytest.raises(ValueError, match="init has 2 weights"):
        fit_weights_from_features(torch.ones(2, 3), beta=1.0, init=[0.0, 0.0])


def test_stage2_on_reward_model_features(tiny_model, byte_tokenizer):
    rm = perturbed(tiny_model, scale=0.5)
    generator = torch.Generator().manual_seed(1)
    w_true = torch.tensor([1.0, -1.0, 0.5])
    pairs = []
    for i in range(8):
        a, b = (bytes(torch.randint(97, 123, (12,), generator=generator).tolist()) for _ in "ab")
        prompt = f"prompt {i}".encode()
        fa = rm.sequence_features(list(prompt), list(a))
        fb = rm.sequence_features(list(prompt), list(b))
        chosen, rejected = (a, b) if float(w_true @ (fa - fb)) > 0 else (b, a)
        pairs.append(TokenizedPair(tuple(prompt), tuple(chosen), tuple(rejected)))
    fit = fit_preference_weights(rm, pairs, l2=0.01)
    assert set(fit.weights) == set(AXES)
    assert fit.train_accuracy == 1.0
    assert cosine(fit.vector, w_true) >= 0.9


def test_text_pairs_need_the_tokenizer(tiny_model):
    rm = perturbed(tiny_model)
    with pytest.raises(ValueError, match="tokenizer"):
        fit_preference_weights(rm, [PreferencePair("p", "a", "b")])


def test_preference_pair_validation():
    with pytest.raises(ValueError, match="empty"):
        PreferencePair("p", "", "b")
    with pytest.raises(ValueError, match="same text"):
        PreferencePair("p", "a", "a")


# ---------------------------------------------------------------- stage 1


def stage1_pairs() -> list[TokenizedPair]:
    """Axis 0 prefers responses of 'x', axis 2 prefers responses of 'z'."""
    pairs = []
    for i in range(6):
        prompt = tuple(f"question {i}".encode())
        pairs.append(TokenizedPair(prompt, tuple(b"xxxx"), tuple(b"yyyy"), axis=0))
        pairs.append(TokenizedPair(prompt, tuple(b"zzzz"), tuple(b"wwww"), axis=2))
    return pairs


def fresh_rm(tiny_model) -> PersonalizedRewardModel:
    return PersonalizedRewardModel(tiny_model, AXES, beta=0.5, adapted_layers=1)


def test_stage1_loss_goes_down_and_heads_prefer_the_chosen(tiny_model):
    rm = fresh_rm(tiny_model)
    base_before = [p.detach().clone() for p in tiny_model.parameters()]
    result = train_stage1(
        rm, stage1_pairs(), Stage1Config(epochs=3, learning_rate=1e-2), show_progress=False
    )
    assert result.epoch_losses[-1] < result.epoch_losses[0] * 0.5
    assert result.train_accuracy == 1.0
    # the trained axis 0 head now rewards the chosen response on an unseen prompt
    prompt = list(b"a new question")
    f_chosen = rm.sequence_features(prompt, list(b"xxxx"))
    f_rejected = rm.sequence_features(prompt, list(b"yyyy"))
    assert f_chosen[0] > f_rejected[0]
    # the base model stays frozen
    assert all(torch.equal(a, b) for a, b in zip(base_before, tiny_model.parameters(), strict=True))


def test_stage1_resumes_to_the_same_weights(tiny_model, tmp_path):
    straight = fresh_rm(tiny_model)
    train_stage1(
        straight, stage1_pairs(), Stage1Config(epochs=3, learning_rate=1e-2), show_progress=False
    )

    resumed = fresh_rm(tiny_model)
    config = Stage1Config(epochs=2, learning_rate=1e-2, checkpoint_dir=tmp_path)
    train_stage1(resumed, stage1_pairs(), config, show_progress=False)
    interrupted_then_resumed = fresh_rm(tiny_model)  # a new process would start from scratch
    config = Stage1Config(epochs=3, learning_rate=1e-2, checkpoint_dir=tmp_path)
    result = train_stage1(interrupted_then_resumed, stage1_pairs(), config, show_progress=False)
    assert result.resumed_from_epoch == 2
    assert len(result.epoch_losses) == 3
    assert torch.allclose(interrupted_then_resumed.heads, straight.heads, atol=1e-6)


def test_stage1_pairs_need_an_axis(tiny_model):
    rm = fresh_rm(tiny_model)
    with pytest.raises(ValueError, match="need an axis"):
        train_stage1(rm, [TokenizedPair((1,), (2,), (3,))], show_progress=False)
