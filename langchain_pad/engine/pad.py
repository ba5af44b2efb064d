"""PAD guidance: score each step's candidates with the personalized reward.

For every guided row, each step, for each of the base model's top-K candidates ``a``:

    score(a) = log pi_LM(a | s) + beta * w_p . phi(s, a)          (paper, eq. 7)

The PersRM reads the base model's own trunk hidden states (``observe``), runs only its
adapter layers with their own KV cache, and scores all K candidates in one matrix
product, so the extra cost per token is a few layers, not a second model.

``normalize="candidates"`` (default) normalizes both ``pihat_theta_i`` and ``pi_ref``
over the K candidates instead of the whole vocabulary. The two normalizers are constant
across the candidates of a step, so rewards differ from the vocabulary-normalized ones
by a per-step constant and every greedy choice and sampling distribution is identical;
it saves one ``d x V`` matrix product per step. ``normalize="vocab"`` reports the exact
``phi`` of the paper (tests check both choose the same tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from langchain_pad.engine.guidance import DecodingStep, ForwardOutput

if TYPE_CHECKING:
    from langchain_pad.reward_model import PersonalizedRewardModel

Normalization = Literal["candidates", "vocab"]


@dataclass(frozen=True)
class PADGuidance:
    """Per-row payload: the user's ``w_p`` (one weight per axis) and optionally ``beta``."""

    weights: tuple[float, ...]
    beta: float | None = None

    def __post_init__(self) -> None:
        if not all(math.isfinite(w) for w in self.weights):
            raise ValueError(f"preference weights must be finite numbers, got {self.weights}.")
        if self.beta is not None and not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {self.beta!r}.")


class PADGuide:
    """A :class:`~langchain_pad.engine.guidance.StepGuide` backed by a PersRM."""

    needs_hidden_states = True

    def __init__(
        self,
        reward_model: PersonalizedRewardModel,
        *,
        default_candidates: int = 10,
        normalize: Normalization = "candidates",
    ) -> None:
        if normalize not in ("candidates", "vocab"):
            raise ValueError(f"normalize must be 'candidates' or 'vocab', got {normalize!r}.")
        if default_candidates < 1:
            raise ValueError(f"default_candidates must be >= 1, got {default_candidates}.")
        self.reward_model = reward_model
        self.default_candidates = default_candidates
        self.normalize: Normalization = normalize

    def start(self, payloads: Sequence[Any]) -> PADSession:
        return PADSession(self.reward_model, payloads, self.normalize)


class PADSession:
    """PAD state for one wave: adapter KV cache, per-row ``w_p`` and ``beta``."""

    def __init__(
        self,
        reward_model: PersonalizedRewardModel,
        payloads: Sequence[Any],
        normalize: Normalization,
    ) -> None:
        from transformers import DynamicCache

        self.rm = reward_model
        self.normalize = normalize
        d = reward_model.num_axes
        weights = torch.zeros(len(payloads), d)
        betas = torch.full((len(payloads),), reward_model.beta)
        guided = torch.zeros(len(payloads), dtype=torch.bool)
        for row, payload in enumerate(payloads):
            if payload is None:
                continue
            if not isinstance(payload, PADGuidance):
                raise TypeError(
                    f"PAD rows need a PADGuidance payload, got {type(payload).__name__}."
                )
            if len(payload.weights) != d:
                raise ValueError(
                    f"w_p has {len(payload.weights)} weights but the reward model has {d} axes "
                    f"({', '.join(reward_model.axes)})."
                )
            weights[row] = torch.tensor(payload.weights)
            if payload.beta is not None:
                betas[row] = payload.beta
            guided[row] = True
        self.weights, self.betas, self.guided = weights, betas, guided
        self.cache = DynamicCache(config=reward_model.adapter.config)
        self.adapted: torch.Tensor | None = None
        self._phi: torch.Tensor | None = None
        self._reward: torch.Tensor | None = None
        self._base_logprobs: torch.Tensor | None = None
        self._base_choice: torch.Tensor | None = None

    def observe(self, forward: ForwardOutput) -> None:
        trunk = forward.hidden_states[self.rm.trunk_layer]
        adapted = self.rm.adapt(
            trunk,
            attention_mask=forward.attention_mask,
            position_ids=forward.position_ids,
            cache=self.cache,
        )
        self.adapted = adapted[:, -1]

    def score(self, step: DecodingStep) -> torch.Tensor:
        if self.adapted is None:
            raise RuntimeError("PADSession.score called before observe(): no hidden state yet.")
        per_axis = self.rm.axis_hidden(self.adapted)  # [B, d, H]
        lm_head = self.rm.lm_head_weight
        if self.normalize == "candidates":
            embeddings = lm_head[step.candidate_ids]  # [B, K, H]
            theta_logits = torch.einsum("bdh,bkh->bkd", per_axis, embeddings).float()
            theta = torch.log_softmax(theta_logits, dim=1)
            ref = torch.log_softmax(step.base_logprobs, dim=1).unsqueeze(-1)
        else:
            theta_full = torch.log_softmax((per_axis @ lm_head.T).float(), dim=-1)  # [B, d, V]
            index = step.candidate_ids.unsqueeze(1).expand(-1, theta_full.shape[1], -1)
            theta = theta_full.gather(-1, index).transpose(1, 2)  # [B, K, d]
            ref = step.base_logprobs.unsqueeze(-1)
        phi = theta - ref  # [B, K, d]   eq. 5
        reward = self.betas.unsqueeze(1) * (phi @ self.weights.unsqueeze(-1)).squeeze(-1)  # eq. 6
        reward = reward * self.guided.unsqueeze(1)
        self._phi, self._reward, self._base_logprobs = phi, reward, step.base_logprobs
        # Candidates come best base score first: column 0 is what the base model would
        # have picked here, kept so explanations can name the token PAD replaced.
        self._base_choice = step.candidate_ids[:, 0]
        return step.scores + reward  # eq. 7

    def records(self, chosen: torch.Tensor) -> list[dict[str, Any] | None]:
        """Per guided row: the chosen token's reward, ``phi``, base log-prob and rank.

        ``base_token_id`` is the base model's own first choice at this step (rank 0 of
        the candidates); it equals the chosen token unless ``changed``.
        """
        if (
            self._phi is None
            or self._reward is None
            or self._base_logprobs is None
            or self._base_choice is None
        ):
            return [None] * len(chosen)
        rows = torch.arange(len(chosen))
        reward = self._reward[rows, chosen].tolist()
        phi = self._phi[rows, chosen].tolist()
        base = self._base_logprobs[rows, chosen].tolist()
        base_choice = self._base_choice.tolist()
        ranks = chosen.tolist()
        out: list[dict[str, Any] | None] = []
        for row, is_guided in enumerate(self.guided.tolist()):
            if not is_guided:
                out.append(None)
                continue
            out.append(
                {
                    "reward": reward[row],
                    "features": phi[row],
                    "base_logprob": base[row],
                    "base_rank": ranks[row],
                    "changed": ranks[row] != 0,
                    "base_token_id": base_choice[row],
                }
            )
        return out

    def select_rows(self, keep: torch.Tensor) -> None:
        self.cache.batch_select_indices(keep)
        self.weights = self.weights[keep]
        self.betas = self.betas[keep]
        self.guided = self.guided[keep]
        if self.adapted is not None:
            self.adapted = self.adapted[keep]
