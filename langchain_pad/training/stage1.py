"""Stage 1: train the PersRM's adapter and axis heads on axis-labelled preference pairs.

With ``w`` fixed to the unit vector of the pair's axis ``i``, the PAD loss (paper, eq. 8)
is a DPO-form loss on that axis's features:

    L = -log sigmoid( beta * sum_t phi_i(y_w) - beta * sum_t phi_i(y_l) )

The frozen trunk's hidden states and the reference log-probs of every pair are
computed once; each step then runs only the adapter, one head and the shared lm_head.
Training is seeded and checkpointed after every epoch, so an interrupted run resumes
where it stopped and ends with the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from langchain_pad.training.pairs import TokenizedPair

if TYPE_CHECKING:
    from langchain_pad.reward_model import PersonalizedRewardModel

_CHECKPOINT = "stage1_checkpoint.pt"


def pad_loss(phi_chosen: torch.Tensor, phi_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """``-log sigmoid(beta * (sum phi(y_w) - sum phi(y_l)))`` for one axis (eq. 8)."""
    margin = beta * (phi_chosen.sum() - phi_rejected.sum())
    return -torch.nn.functional.logsigmoid(margin)


@dataclass(frozen=True)
class Stage1Config:
    epochs: int = 3
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint_dir: Path | None = None
    """Where to checkpoint after every epoch and resume from; None: no checkpoints."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")


@dataclass
class Stage1Result:
    epoch_losses: list[float] = field(default_factory=list)
    train_accuracy: float = 0.0
    """Share of training pairs whose chosen response the trained head prefers."""
    axis_accuracy: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Per axis index: (training pairs won, training pairs)."""
    resumed_from_epoch: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class _Prepared:
    """A pair's frozen inputs, computed once."""

    axis: int
    chosen: tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]
    rejected: tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]


def _prepare(rm: PersonalizedRewardModel, pair: TokenizedPair) -> _Prepared:
    if pair.axis is None:
        raise ValueError("stage-1 pairs need an axis: which preference axis the pair teaches.")
    if not 0 <= pair.axis < rm.num_axes:
        raise ValueError(f"pair axis {pair.axis} is outside the reward model's {rm.num_axes} axes.")
    responses = [list(pair.chosen_ids), list(pair.rejected_ids)]
    sides = [
        (trunk, ref, start, torch.tensor(response))
        for response, (trunk, ref, start) in zip(
            responses, rm.references(list(pair.prompt_ids), responses), strict=True
        )
    ]
    return _Prepared(pair.axis, sides[0], sides[1])


def _pair_margin(rm: PersonalizedRewardModel, item: _Prepared) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.tensor([item.axis])
    trunk, ref, start, targets = item.chosen
    phi_w = rm.phi_of_tokens(trunk, start, targets, ref, axes=axis)[:, 0]
    trunk, ref, start, targets = item.rejected
    phi_l = rm.phi_of_tokens(trunk, start, targets, ref, axes=axis)[:, 0]
    return phi_w, phi_l


def train_stage1(
    rm: PersonalizedRewardModel,
    pairs: Sequence[TokenizedPair],
    config: Stage1Config | None = None,
    *,
    show_progress: bool = True,
) -> Stage1Result:
    """Train adapter + heads in place; return per-epoch losses and training accuracy."""
    from tqdm.auto import tqdm

    config = config or Stage1Config()
    if not pairs:
        raise ValueError("stage 1 needs at least one preference pair.")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    prepared = [
        _prepare(rm, p)
        for p in tqdm(pairs, desc="trunk features", disable=not show_progress, unit="pair")
    ]
    params = [*rm.adapter.parameters(), rm.heads]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    result = Stage1Result()
    first_epoch = 0
    checkpoint = config.checkpoint_dir / _CHECKPOINT if config.checkpoint_dir else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        rm.adapter.load_state_dict(state["adapter"])
        with torch.no_grad():
            rm.heads.copy_(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch = int(state["epoch"]) + 1
        result.epoch_losses = [float(x) for x in state["epoch_losses"]]
        result.resumed_from_epoch = first_epoch

    rm.adapter.train(True)
    rm.adapter.requires_grad_(True)
    rm.heads.requires_grad_(True)
    try:
        for epoch in range(first_epoch, config.epochs):
            order = torch.randperm(
                len(prepared), generator=torch.Generator().manual_seed(config.seed + epoch)
            )
            total = 0.0
            bar = tqdm(
                order.tolist(),
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not show_progress,
                unit="pair",
            )
            for index in bar:
                phi_w, phi_l = _pair_margin(rm, prepared[index])
                loss = pad_loss(phi_w, phi_l, rm.beta)
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += float(loss.detach())
                bar.set_postfix(loss=f"{loss.item():.4f}")
            result.epoch_losses.append(total / len(prepared))
            if checkpoint is not None:
                _save_checkpoint(checkpoint, rm, optimizer, epoch, result.epoch_losses)
    finally:
        rm.adapter.train(False)
        rm.adapter.requires_grad_(False)
        rm.heads.requires_grad_(False)

    with torch.no_grad():
        wins = 0
        for item in prepared:
            phi_w, phi_l = _pair_margin(rm, item)
            won = int(phi_w.sum() > phi_l.sum())
            wins += won
            axis_wins, axis_n = result.axis_accuracy.get(item.axis, (0, 0))
            result.axis_accuracy[item.axis] = (axis_wins + won, axis_n + 1)
    result.train_accuracy = wins / len(prepared)
    result.seconds = time.perf_counter() - started
    return result


def _save_checkpoint(
    path: Path,
    rm: PersonalizedRewardModel,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    losses: list[float],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "adapter": rm.adapter.state_dict(),
        "heads": rm.heads.detach().clone(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "epoch_losses": torch.tensor(losses),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a crash mid-save leaves the previous checkpoint intact
