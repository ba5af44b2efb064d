"""Fast-forwarding: tokens a grammar forces are taken without a decision, fed in runs.

Where a row's grammar leaves no choice (``<tool_call>\\n{"name": "`` before a tool's
name, ``", "age": `` between two fields), scoring candidates would only confirm the one
token the mask allows. So the loop asks the grammar which tokens it forces
(llguidance's ``compute_ff_tokens``, see :meth:`TokenGrammar.forced_tokens`):

* right after a row's pick (or at a decision point where the grammar already forces
  something), the forced tokens are taken at once: emitted, consumed by the grammar,
  and queued to be fed to the model. No top-K, no PersRM scoring, no sampling;
* each forward feeds every row the same number of queued tokens, the shortest queue's
  length (:func:`next_feed`): a wave of one row, or one whose rows are all forced,
  feeds whole runs in one multi-token forward; a mixed wave feeds one token a row, and
  a row with tokens still queued skips the decision until its queue is empty.

Equal widths need no padding inside a step, so the base model and the PAD adapter's
cache (which reads the same forward's hidden states) see the same tokens in the same
positions as without fast-forwarding. The grammar's mask holds exactly the first
forced token wherever tokens are forced, so greedy output is the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from langchain_pad.engine.types import GenerationRequest, RowGrammar

__all__ = ["forced_at_decision", "forced_tokens", "next_feed"]


class QueuedRow(Protocol):
    """What fast-forwarding reads of a row of the loop."""

    request: GenerationRequest
    queue: list[int]


def forced_tokens(grammar: RowGrammar | None) -> list[int]:
    """The tokens ``grammar`` forces from its current state ([] without a grammar)."""
    if grammar is None or grammar.is_stopped():
        return []
    return grammar.forced_tokens()


def forced_at_decision(rows: Sequence[QueuedRow]) -> dict[int, list[int]]:
    """``{position: forced tokens}`` for the rows due a decision whose grammar forces one.

    A row with tokens still queued is not due a decision; a row without a grammar
    never has forced tokens (and costs nothing here).
    """
    out: dict[int, list[int]] = {}
    for position, row in enumerate(rows):
        if row.queue or row.request.grammar is None:
            continue
        forced = forced_tokens(row.request.grammar)
        if forced:
            out[position] = forced
    return out


def next_feed(rows: Sequence[QueuedRow]) -> torch.Tensor:
    """``[rows, width]`` token ids for the next forward, taken off the rows' queues.

    ``width`` is the shortest queue's length, so every row feeds real tokens only (no
    padding inside a step). Every row has at least one queued token: its pick.
    """
    import torch

    width = min(len(row.queue) for row in rows)
    if width < 1:
        raise RuntimeError("a row reached the next forward with no token to feed")
    ids = torch.tensor([row.queue[:width] for row in rows], dtype=torch.long)
    for row in rows:
        del row.queue[:width]
    return ids
