"""A step guide whose token reward is a judge's own gain: judge-guided sampling.

Why: a PersRM can only re-rank what the base model offers at each step (its top-K under
the plausibility floor). Pairs sampled under contrasting system prompts differ in ways no
re-ranking of the plain model reaches (another opening, another plan), and on the style
axis a PersRM trained on them scored pairs well (0.78 held out) yet steered warm at chance
(benchmarks/results/style_feasibility.md). Decoding each pole with the judge as the
reward yields answers that differ where a re-ranking can make them differ: data on the
path PAD decodes. The same guide, with no PersRM at all, bounds what any token reward can
do on an axis (``benchmarks/style_oracle.py``).

Each candidate's reward is ``strength * sign * (judge(answer + candidate) - judge(answer))``
over the decoded text, so it costs a judge call per candidate per step: fine for data
generation and benchmarks, not meant for serving.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_pad.judges import judge

if TYPE_CHECKING:
    import torch

    from langchain_pad.engine.guidance import DecodingStep, ForwardOutput
    from langchain_pad.records import PADStepRecord

__all__ = ["JudgeGuide", "JudgeTarget"]


@dataclass(frozen=True)
class JudgeTarget:
    """One guided row's payload: which judge to push, which way, how hard."""

    judge: str
    sign: int
    """+1: raise the judge's score; -1: lower it."""
    strength: float
    floor: float = 0.1
    """Candidates whose probability is below this fraction of the best one's are left
    out, as PAD's plausibility floor does."""

    def __post_init__(self) -> None:
        judge(self.judge)  # an unknown name raises ValueError listing the known ones
        if self.sign not in (-1, 1):
            raise ValueError(f"sign must be +1 or -1, got {self.sign!r}.")
        if not self.strength > 0:
            raise ValueError(f"strength must be > 0, got {self.strength!r}.")
        if not 0 < self.floor <= 1:
            raise ValueError(f"floor must be in (0, 1], got {self.floor!r}.")


class JudgeSession:
    """Per row: the tokens chosen so far, and each candidate's judge gain."""

    def __init__(self, tokenizer: Any, payloads: Sequence[Any]) -> None:
        self._tokenizer = tokenizer
        self._targets: list[JudgeTarget | None] = [
            p if isinstance(p, JudgeTarget) else None for p in payloads
        ]
        self._answers: list[list[int]] = [[] for _ in payloads]
        self._last_ids: torch.Tensor | None = None
        self._last_rows: list[int] = []

    def observe(self, forward: ForwardOutput) -> None:
        """The judge reads text, not hidden states."""

    def score(self, step: DecodingStep) -> torch.Tensor:
        import torch

        rows = list(range(len(self._targets))) if step.rows is None else step.rows.tolist()
        self._last_ids, self._last_rows = step.candidate_ids, rows
        reward = torch.zeros_like(step.scores)
        for i, row in enumerate(rows):
            target = self._targets[row]
            if target is None:
                continue
            score = judge(target.judge)
            before = self._answers[row]
            now = score(self._tokenizer.decode(before))
            floor = float(step.scores[i, 0]) + math.log(target.floor)
            for j, candidate in enumerate(step.candidate_ids[i].tolist()):
                if j > 0 and float(step.scores[i, j]) < floor:
                    reward[i, j] = float("-inf")  # column 0, the best, always passes
                    continue
                after = score(self._tokenizer.decode([*before, candidate]))
                reward[i, j] = target.strength * target.sign * (after - now)
        return step.scores + reward

    def records(self, chosen: torch.Tensor) -> list[PADStepRecord | None]:
        if self._last_ids is not None:
            for i, row in enumerate(self._last_rows):
                self._answers[row].append(int(self._last_ids[i, int(chosen[i])]))
        return [None] * len(chosen)

    def select_rows(self, keep: torch.Tensor) -> None:
        index = keep.tolist()
        self._targets = [self._targets[i] for i in index]
        self._answers = [self._answers[i] for i in index]


class JudgeGuide:
    """A :class:`~langchain_pad.engine.guidance.StepGuide` rewarding each candidate by how
    far it moves a judge (payload: a :class:`JudgeTarget`; None leaves a row plain)."""

    needs_hidden_states = False
    default_candidates = 10

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def start(self, payloads: Sequence[Any]) -> JudgeSession:
        return JudgeSession(self.tokenizer, payloads)
