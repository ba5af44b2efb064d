"""The degeneration guard: what keeps steered (and plain) answers from looping.

Two parts, both on by default, chosen by measurement (``benchmarks/guard_sweep.py``,
results in ``benchmarks/results/guard_sweep.md``; the model card has the table):

* a **repetition penalty** on every free-text row, plain and PAD alike (the base model
  loops too: 7 of 12 of its 256-token greedy answers did). It is the transformers
  ``RepetitionPenaltyLogitsProcessor`` over the prompt and the answer so far, as
  ``generate(repetition_penalty=...)`` applies it, except whitespace-only tokens
  (newlines, spaces: lists and paragraphs repeat them by design, and llama.cpp leaves
  newlines out of its penalty too). Tool calls and structured output get none by
  default: their grammar already bounds them, and JSON repeats quotes and keys by design;
* a **plausibility floor** on PAD rows (as contrastive decoding's): only candidates
  whose base probability is at least this share of the best candidate's may be picked,
  so a reward can reorder what the base model finds plausible but never lift a token it
  finds absurd. The best candidate always passes, so zero steering still picks exactly
  what plain decoding picks.

Both are per request: ``PADChatModel(repetition_penalty=..., plausibility=...)`` or per
call; ``repetition_penalty=1.0`` and ``plausibility=0.0`` turn them off.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PLAUSIBILITY", "DEFAULT_REPETITION_PENALTY", "repetition_penalty_for"]

DEFAULT_REPETITION_PENALTY = 1.15
"""The free-text default (see the module docstring for the measurement)."""

DEFAULT_PLAUSIBILITY = 0.1
"""The PAD rows' default floor: a tenth of the best candidate's probability."""


def repetition_penalty_for(given: float | None, *, constrained: bool) -> float:
    """The penalty a request decodes with: the one given, else the guard's default for
    free text and none for grammar-constrained output."""
    if given is not None:
        return given
    return 1.0 if constrained else DEFAULT_REPETITION_PENALTY
