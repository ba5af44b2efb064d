"""Stage 2: fit one user's ``w_p`` from that user's own preference pairs.

Everything but ``w_p`` is frozen, so each response's token features can be summed once,
``F(y) = sum_t phi(s_t, y_t)``, and the PAD loss becomes a d-dimensional logistic
regression on the differences ``D = F(chosen) - F(rejected)``:

    L(w) = mean_n -log sigmoid(beta * w . D_n) + (l2 / 2) * ||w||^2

The L2 term pulls ``w`` toward zero (no personalization), so a handful of pairs cannot
blow the weights up; a warm start lets feedback refine an existing profile.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from langchain_pad.training.pairs import PreferencePair, TokenizedPair, tokenize_pair

if TYPE_CHECKING:
    from langchain_pad.reward_model import PersonalizedRewardModel


@dataclass(frozen=True)
class PreferenceFit:
    """A fitted ``w_p`` and how well it explains the pairs it was fitted on."""

    weights: dict[str, float]
    vector: tuple[float, ...]
    loss: float
    train_accuracy: float
    pairs: int
    seconds: float


def pair_feature_differences(
    reward_model: PersonalizedRewardModel,
    pairs: Sequence[PreferencePair | TokenizedPair],
    tokenizer: Any = None,
) -> torch.Tensor:
    """``[N, d]``: ``F(chosen) - F(rejected)`` per pair, computed once with frozen models."""
    rows = []
    for pair in pairs:
        if isinstance(pair, PreferencePair):
            if tokenizer is None:
                raise ValueError("text pairs need the base model's tokenizer: pass tokenizer=.")
            pair = tokenize_pair(tokenizer, pair)
        both = reward_model.responses_features(
            list(pair.prompt_ids), [list(pair.chosen_ids), list(pair.rejected_ids)]
        )
        rows.append(both[0] - both[1])
    return torch.stack(rows).float()


def fit_weights_from_features(
    differences: torch.Tensor,
    *,
    beta: float,
    l2: float = 0.1,
    init: Sequence[float] | None = None,
    max_iter: int = 200,
) -> tuple[torch.Tensor, float]:
    """Minimize the stage-2 loss over ``w`` with L-BFGS; return ``(w, loss)``."""
    if differences.ndim != 2 or differences.shape[0] == 0:
        raise ValueError("need at least one preference pair to fit w_p.")
    d = differences.shape[1]
    start = torch.zeros(d) if init is None else torch.tensor(list(init), dtype=torch.float32)
    if start.shape != (d,):
        raise ValueError(f"init has {start.numel()} weights, the reward model has {d} axes.")
    # Features can be large (sums over many tokens); scale them so the optimizer is
    # well conditioned, and undo the scale on the weights afterwards.
    scale = float(differences.abs().max().clamp(min=1e-6))
    x = differences / scale
    w = (start * scale).clone().requires_grad_(True)
    reg = l2 / scale**2  # keeps the penalty on the unscaled weights

    optimizer = torch.optim.LBFGS([w], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _stage2_loss(x, w, beta, reg)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        final = _stage2_loss(x, w, beta, reg).item()
    return (w.detach() / scale), final


def uncertainty_order(differences: torch.Tensor, weights: Sequence[float]) -> list[int]:
    """Candidate pairs ordered from most to least informative under the current ``w``.

    A pair whose features the current ``w`` barely separates (small normalized margin
    ``|w . D| / |D|``) is the one whose label says most about the user: asking it cuts
    the set of consistent ``w`` near in half. Eight binary labels carry at most eight
    bits; spending them on uncertain pairs is what lets 8 pairs pin ``w_p`` down
    (random pairs leave about one user in four below cosine 0.9 in three dimensions).
    """
    w = torch.tensor(list(weights), dtype=torch.float32)
    if w.norm() == 0:
        return list(range(differences.shape[0]))
    margins = (differences.float() @ w).abs() / differences.float().norm(dim=1).clamp(min=1e-9)
    return [int(i) for i in torch.argsort(margins)]


def _stage2_loss(x: torch.Tensor, w: torch.Tensor, beta: float, l2: float) -> torch.Tensor:
    margins = beta * (x @ w)
    return -torch.nn.functional.logsigmoid(margins).mean() + 0.5 * l2 * (w @ w)


def fit_preference_weights(
    reward_model: PersonalizedRewardModel,
    pairs: Sequence[PreferencePair | TokenizedPair],
    *,
    tokenizer: Any = None,
    l2: float = 0.1,
    init: Sequence[float] | dict[str, float] | None = None,
) -> PreferenceFit:
    """Fit ``w_p`` for one user from their ``(prompt, chosen, rejected)`` pairs."""
    started = time.perf_counter()
    if init is not None:
        init = reward_model.weight_vector(init)  # same axis checks as decoding
    differences = pair_feature_differences(reward_model, pairs, tokenizer)
    w, loss = fit_weights_from_features(differences, beta=reward_model.beta, l2=l2, init=init)
    accuracy = float(((differences @ w) > 0).float().mean())
    vector = tuple(float(v) for v in w)
    return PreferenceFit(
        weights=dict(zip(reward_model.axes, vector, strict=True)),
        vector=vector,
        loss=loss,
        train_accuracy=accuracy,
        pairs=len(pairs),
        seconds=time.perf_counter() - started,
    )
