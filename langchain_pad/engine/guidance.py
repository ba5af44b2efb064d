"""The one interface through which anything steers decoding: step guides.

The token loop computes, for every row, the base model's top-K candidates and their
scores, then hands them to a guide session which may change the scores. PAD (the
personalized reward model) is one such guide; the loop does not know which guides
it runs. A guide is stateful across the steps of one batch ("wave"): it may keep its
own KV cache, fed by the base model's hidden states, and must drop rows when the
loop drops finished rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from langchain_pad.records import PADStepRecord


@dataclass(frozen=True)
class ForwardOutput:
    """What one forward pass of the base model computed, for guides that reuse its trunk."""

    hidden_states: tuple[torch.Tensor, ...]
    """Per layer (embeddings first), ``[rows, new_positions, hidden]``."""
    attention_mask: torch.Tensor
    """``[rows, total_positions]``, 0 on left padding."""
    position_ids: torch.Tensor
    """``[rows, new_positions]``."""
    is_prefill: bool


@dataclass(frozen=True)
class DecodingStep:
    """The candidates of one step, for every row still decoding."""

    candidate_ids: torch.Tensor
    """``[rows, K]`` token ids, best base score first."""
    base_logprobs: torch.Tensor
    """``[rows, K]`` log pi_LM(a | s) of each candidate (before any processing)."""
    scores: torch.Tensor
    """``[rows, K]`` scores so far (base log-probs after repetition rules)."""
    payloads: Sequence[Any]
    """Per row, the request's ``guidance`` payload (None: leave this row alone)."""
    rows: torch.Tensor | None = None
    """Positions, among the wave's current rows, of the rows these candidates are for
    (``[rows]``); None: all of them, in order. Rows whose grammar forces their next
    tokens need no decision and are left out."""


class GuideSession(Protocol):
    """A guide's state for one wave of rows."""

    def observe(self, forward: ForwardOutput) -> None:
        """See the base model's forward pass (prefill, or the tokens fed since: one per
        row, or a run of forced tokens)."""

    def score(self, step: DecodingStep) -> torch.Tensor:
        """Return new ``[rows, K]`` candidate scores."""

    def records(self, chosen: torch.Tensor) -> list[PADStepRecord | None]:
        """Per row of the last :meth:`score` step, what to report about the chosen
        candidate index (``[rows]``)."""

    def select_rows(self, keep: torch.Tensor) -> None:
        """Keep only these rows (indices into the current rows), in this order."""


class StepGuide(Protocol):
    """Something that steers decoding; starts one session per wave."""

    needs_hidden_states: bool
    default_candidates: int
    """Candidate-set size for guided rows that set no ``top_k``."""

    def start(self, payloads: Sequence[Any]) -> GuideSession:
        """Begin a wave whose rows carry these payloads."""
