"""PAD guidance: score each step's candidates with the personalized reward.

For every guided row, each step, for each of the base model's top-K candidates ``a``:

    score(a) = log pi_LM(a | s) + beta * w_p . phi(s, a)          (paper, eq. 7)

The PersRM reads the base model's own trunk hidden states (``observe``), runs only its
adapter layers with their own KV cache, and scores all K candidates in one matrix
product, so the extra cost per token is a few layers, not a second model.

One wave may mix plain rows and rows guided by different reward models (one runtime
serves them all): rows are grouped by reward model, each group keeps its own adapter
cache over its own rows, and plain rows run no adapter at all.

**Gated reward calls** (``gate=True``, the default): where the plausibility floor leaves
only the base model's first choice, no reward can change the pick (greedy or sampled),
so the step is not scored at all. The adapter then only collects the trunk's hidden
states, and catches its cache up in one multi-token forward at the next step that is
scored. The picks are those of scoring every step (up to float rounding of the batched
catch-up); such a token's record has no reward (``PADStepRecord.reward`` is None).

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from langchain_pad.engine.guidance import DecodingStep, ForwardOutput
from langchain_pad.records import PADStepRecord

if TYPE_CHECKING:
    from langchain_pad.reward_model import PersonalizedRewardModel

Normalization = Literal["candidates", "vocab"]

MAX_BETA = 1e4
"""Largest reward scale a row may ask for: far above any useful value (the shipped
PersRM's is 0.1), and small enough that ``beta * w * phi`` stays finite in float32."""


def check_beta(beta: float | None) -> float | None:
    """``beta`` as the engine can carry it, or a ValueError naming what is accepted."""
    if beta is None:
        return None
    if isinstance(beta, bool) or not isinstance(beta, int | float):
        raise ValueError(f"beta must be a number in (0, {MAX_BETA:g}], got {beta!r}.")
    value = float(beta)
    if not (math.isfinite(value) and 0 < value <= MAX_BETA):
        raise ValueError(f"beta must be a number in (0, {MAX_BETA:g}], got {beta!r}.")
    return value


def check_plausibility(plausibility: float) -> float:
    """The plausibility floor as the engine carries it, or a ValueError saying the range."""
    if (
        isinstance(plausibility, bool)
        or not isinstance(plausibility, int | float)
        or not (0.0 <= plausibility < 1.0)
    ):
        raise ValueError(
            f"plausibility must be a number in [0, 1) (0 = off), got {plausibility!r}."
        )
    return float(plausibility)


@dataclass(frozen=True)
class PADGuidance:
    """Per-row payload: the user's ``w_p`` (one weight per axis) and optionally ``beta``.

    ``reward_model`` names the PersRM that scores this row; None uses the guide's own
    (a guide built for one reward model, as tests and benchmarks do).
    """

    weights: tuple[float, ...]
    beta: float | None = None
    reward_model: PersonalizedRewardModel | None = field(default=None, compare=False)
    normalize: Normalization | None = None
    plausibility: float = 0.0
    """The degeneration guard: only candidates whose base probability is at least this
    share of the best candidate's may be picked (0: every top-K candidate may). A
    reward can then reorder what the base model finds plausible, but cannot lift a
    token it finds absurd -- the "algae algae algae" of a strong weight."""

    def __post_init__(self) -> None:
        if not all(math.isfinite(w) for w in self.weights):
            raise ValueError(f"preference weights must be finite numbers, got {self.weights}.")
        check_beta(self.beta)
        check_plausibility(self.plausibility)
        if self.normalize not in (None, "candidates", "vocab"):
            raise ValueError(f"normalize must be 'candidates' or 'vocab', got {self.normalize!r}.")
        rm = self.reward_model
        if rm is not None and len(self.weights) != rm.num_axes:
            raise ValueError(
                f"w_p has {len(self.weights)} weights but the reward model has {rm.num_axes} "
                f"axes ({', '.join(rm.axes)})."
            )


class PADGuide:
    """A :class:`~langchain_pad.engine.guidance.StepGuide` backed by one or more PersRMs."""

    needs_hidden_states = True

    def __init__(
        self,
        reward_model: PersonalizedRewardModel | None = None,
        *,
        default_candidates: int = 10,
        normalize: Normalization = "candidates",
        gate: bool = True,
    ) -> None:
        if normalize not in ("candidates", "vocab"):
            raise ValueError(f"normalize must be 'candidates' or 'vocab', got {normalize!r}.")
        if default_candidates < 1:
            raise ValueError(f"default_candidates must be >= 1, got {default_candidates}.")
        self.reward_model = reward_model
        self.default_candidates = default_candidates
        self.normalize: Normalization = normalize
        self.gate = gate
        """Skip scoring steps the plausibility floor has already decided (see above)."""

    def start(self, payloads: Sequence[Any]) -> PADSession:
        return PADSession(payloads, self.reward_model, self.normalize, gate=self.gate)


class _Group:
    """The rows of a wave that one reward model scores, with that model's adapter cache."""

    def __init__(self, rm: PersonalizedRewardModel, normalize: Normalization) -> None:
        from transformers import DynamicCache

        self.rm = rm
        self.normalize: Normalization = normalize
        self.positions: list[int] = []
        """Positions of this group's rows in the wave's current rows."""
        self.weights: list[tuple[float, ...]] = []
        self.betas: list[float] = []
        self.floors: list[float] = []
        """Per row, ``log(plausibility)`` (``-inf``: no floor)."""
        self.cache = DynamicCache(config=rm.adapter.config)
        self.adapted: torch.Tensor | None = None
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        """Trunk hidden states and position ids of forwards the adapter has not run on
        yet (``[G, new, H]``, ``[G, new]``): gated steps leave them for one catch-up."""
        self.mask: torch.Tensor | None = None
        """The attention mask of the latest forward, over this group's rows."""

    def freeze(self) -> None:
        self.index = torch.tensor(self.positions, dtype=torch.long)
        self.weight_matrix = torch.tensor(self.weights, dtype=torch.float32)
        self.beta_vector = torch.tensor(self.betas, dtype=torch.float32)
        self.floor_vector = torch.tensor(self.floors, dtype=torch.float32)

    def observe(self, forward: ForwardOutput) -> None:
        trunk = forward.hidden_states[self.rm.trunk_layer][self.index]
        self.pending.append((trunk, forward.position_ids[self.index]))
        self.mask = forward.attention_mask[self.index]
        self.adapted = None

    def catch_up(self) -> None:
        """Run the adapter over every position it has not seen, in one forward."""
        if not self.pending:
            return
        if len(self.pending) == 1:
            trunk, positions = self.pending[0]
        else:
            trunk = torch.cat([t for t, _ in self.pending], dim=1)
            positions = torch.cat([p for _, p in self.pending], dim=1)
        self.pending = []
        adapted = self.rm.adapt(
            trunk, attention_mask=self.mask, position_ids=positions, cache=self.cache
        )
        self.adapted = adapted[:, -1]

    def among(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Where this group's rows sit in a step over ``rows`` (None: all the wave's rows).

        Returns their positions in the step and which of the group's rows they are
        (None: all, in order); both empty when none of them is in the step.
        """
        if rows is None:
            return self.index, None
        where = {int(p): i for i, p in enumerate(rows.tolist())}
        pairs = [(where[p], m) for m, p in enumerate(self.positions) if p in where]
        at = torch.tensor([a for a, _ in pairs], dtype=torch.long)
        return at, torch.tensor([m for _, m in pairs], dtype=torch.long)

    def phi(
        self,
        candidate_ids: torch.Tensor,
        base_logprobs: torch.Tensor,
        members: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``phi(s, a)`` for this group's rows (or ``members`` of them): ``[G, K, d]`` (eq. 5)."""
        if self.adapted is None:
            raise RuntimeError("PADSession.score called before observe(): no hidden state yet.")
        adapted = self.adapted if members is None else self.adapted[members]
        per_axis = self.rm.axis_hidden(adapted)  # [G, d, H]
        lm_head = self.rm.lm_head_weight
        if self.normalize == "candidates":
            embeddings = lm_head[candidate_ids]  # [G, K, H]
            theta_logits = torch.einsum("bdh,bkh->bkd", per_axis, embeddings).float()
            theta = torch.log_softmax(theta_logits, dim=1)
            ref = torch.log_softmax(base_logprobs, dim=1).unsqueeze(-1)
        else:
            theta_full = torch.log_softmax((per_axis @ lm_head.T).float(), dim=-1)  # [G, d, V]
            index = candidate_ids.unsqueeze(1).expand(-1, theta_full.shape[1], -1)
            theta = theta_full.gather(-1, index).transpose(1, 2)  # [G, K, d]
            ref = base_logprobs.unsqueeze(-1)
        return theta - ref

    def select(self, keep: list[int]) -> bool:
        """Keep the group's rows still in the wave (``keep``: old positions, new order)."""
        where = {old: local for local, old in enumerate(self.positions)}
        kept = [(new, where[old]) for new, old in enumerate(keep) if old in where]
        if not kept:
            return False
        local = torch.tensor([local for _, local in kept], dtype=torch.long)
        if len(kept) < len(self.positions):
            self.cache.batch_select_indices(local)
            if self.adapted is not None:
                self.adapted = self.adapted[local]
            self.pending = [(t[local], p[local]) for t, p in self.pending]
            if self.mask is not None:
                self.mask = self.mask[local]
            self.weights = [self.weights[i] for _, i in kept]
            self.betas = [self.betas[i] for _, i in kept]
            self.floors = [self.floors[i] for _, i in kept]
        self.positions = [new for new, _ in kept]
        self.freeze()
        return True


_Part = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]
"""One group's share of a step: its positions, ``phi`` and rewards (None: gated), and
which of its rows the floor had decided (None: the session scores every step)."""


class PADSession:
    """PAD state for one wave: per reward model, its rows, their ``w_p`` and ``beta``."""

    def __init__(
        self,
        payloads: Sequence[Any],
        default_reward_model: PersonalizedRewardModel | None = None,
        normalize: Normalization = "candidates",
        *,
        gate: bool = True,
    ) -> None:
        self.rows = len(payloads)
        self.gate = gate
        groups: dict[tuple[int, str], _Group] = {}
        for row, payload in enumerate(payloads):
            if payload is None:
                continue
            if not isinstance(payload, PADGuidance):
                raise TypeError(
                    f"PAD rows need a PADGuidance payload, got {type(payload).__name__}."
                )
            rm = payload.reward_model or default_reward_model
            if rm is None:
                raise ValueError("a PAD row names no reward model and the guide has none.")
            if len(payload.weights) != rm.num_axes:
                raise ValueError(
                    f"w_p has {len(payload.weights)} weights but the reward model has "
                    f"{rm.num_axes} axes ({', '.join(rm.axes)})."
                )
            mode = payload.normalize or normalize
            group = groups.setdefault((id(rm), mode), _Group(rm, mode))
            group.positions.append(row)
            group.weights.append(payload.weights)
            group.betas.append(payload.beta if payload.beta is not None else rm.beta)
            group.floors.append(
                math.log(payload.plausibility) if payload.plausibility > 0 else -math.inf
            )
        self.groups = list(groups.values())
        for group in self.groups:
            group.freeze()
        self._chosen_parts: list[_Part] = []
        self._base_logprobs: torch.Tensor | None = None
        self._base_choice: torch.Tensor | None = None

    def observe(self, forward: ForwardOutput) -> None:
        for group in self.groups:
            group.observe(forward)

    def score(self, step: DecodingStep) -> torch.Tensor:
        reward = torch.zeros_like(step.scores)
        self._chosen_parts = []
        for group in self.groups:
            at, members = group.among(step.rows)
            if len(at) == 0:
                continue  # none of this group's rows is decided at this step
            weights, betas = group.weight_matrix, group.beta_vector
            floors = group.floor_vector
            if members is not None:
                weights, betas, floors = weights[members], betas[members], floors[members]
            # The plausibility floor, relative to the best candidate's (penalized, masked)
            # score: column 0, as candidates come best first. The best candidate always
            # passes, so a zero reward still picks what plain decoding picks.
            scores = step.scores[at]
            implausible = scores < scores[:, :1] + floors.unsqueeze(1)
            decided = implausible[:, 1:].all(dim=1)  # [G]: only the first choice passes
            if self.gate and bool(decided.all()):
                # only the first choice passes for every row: no reward can change a
                # pick, so none is computed (the adapter catches up when one can)
                reward[at] = torch.zeros_like(scores).masked_fill(implausible, float("-inf"))
                self._chosen_parts.append((at, None, None, decided))
                continue
            group.catch_up()
            phi = group.phi(step.candidate_ids[at], step.base_logprobs[at], members)  # [G, K, d]
            r = betas.unsqueeze(1) * (phi @ weights.unsqueeze(-1))[..., 0]
            r = r.masked_fill(implausible, float("-inf"))
            reward[at] = r  # eq. 6
            # a decided row's record reads as gated whether or not its batch mates
            # made the group score this step: a row's records depend on it alone
            self._chosen_parts.append((at, phi, r, decided if self.gate else None))
        self._base_logprobs = step.base_logprobs
        # Candidates come best base score first: column 0 is what the base model would
        # have picked here, kept so explanations can name the token PAD replaced.
        self._base_choice = step.candidate_ids[:, 0]
        return step.scores + reward  # eq. 7

    def records(self, chosen: torch.Tensor) -> list[PADStepRecord | None]:
        """Per row of the last step: the chosen candidate's reward, ``phi``, base log-prob
        and rank."""
        out: list[PADStepRecord | None] = [None] * len(chosen)
        if self._base_logprobs is None or self._base_choice is None:
            return out
        ranks = chosen.tolist()
        rows = torch.arange(len(chosen))
        base = self._base_logprobs[rows, chosen].tolist()
        base_choice = self._base_choice.tolist()
        for at, phi, reward, decided in self._chosen_parts:
            local = torch.arange(len(at))
            picked = chosen[at]
            rewards: list[float | None] = [None] * len(at)
            features: list[tuple[float, ...] | None] = [None] * len(at)
            if phi is not None and reward is not None:  # scored (not gated)
                rewards = list(reward[local, picked].tolist())
                features = [tuple(f) for f in phi[local, picked].tolist()]
                if decided is not None:
                    for i in decided.nonzero().flatten().tolist():
                        rewards[i], features[i] = None, None
            for i, row in enumerate(at.tolist()):
                out[row] = PADStepRecord(
                    reward=rewards[i],
                    features=features[i],
                    base_logprob=base[row],
                    base_rank=ranks[row],
                    base_token_id=base_choice[row],
                )
        return out

    def select_rows(self, keep: torch.Tensor) -> None:
        positions = keep.tolist()
        self.groups = [g for g in self.groups if g.select(positions)]
        self.rows = len(positions)
