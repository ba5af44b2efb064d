"""Decoding steps through ``torch.compile``: the opt-in ``PADRuntime(compile_steps=True)``.

Why: at batch 1 a token of the embedded 135M model is some 210 small matrix products
and, between them, several hundred small eager operators (norms, rotary embeddings,
dtype casts, cache appends), each paying PyTorch's dispatch. Inductor fuses the latter
into a few C++ loops. Measured on a 2-core AMD EPYC (AVX2), int4 weights, one thread,
a bare loop of 64 tokens: 45 ms a token eager, 32 ms compiled (1.39x); see
``benchmarks/README.md`` for the runs through ``invoke``.

Why this shape: one graph with dynamic shapes (``dynamic=True``) over the model's own
forward and transformers' growing ``DynamicCache``, so one compilation serves every
context length and batch size. Static caches were measured too and lost: attention then
runs over the whole preallocated length (1024 positions: no faster than eager), and
bucketing the length recompiles per bucket. Only one-token steps go through it; the
prefill and multi-token feeds (grammar fast-forward) stay eager.

Costs, and why it is off by default: compiling takes one to two minutes on 2 cores (a
second one, for steps that also return hidden states, the first time PAD guides a row),
inductor needs a C++ compiler at run time, and fused arithmetic rounds differently, so
greedy answers can differ from eager ones after some tokens (as another dtype's do).
If compiling fails (no compiler, an unsupported operator), a warning says why and
decoding goes on eagerly: ``fullgraph=True`` makes a failure happen before any of the
step has run, so the step is simply run again uncompiled.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["CompiledSteps"]

logger = logging.getLogger(__name__)


class CompiledSteps:
    """One-token forward passes of ``model`` through ``torch.compile``, eager otherwise."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.error: Exception | None = None
        """Why compiling failed (steps run eagerly from then on); None while it works."""
        self.compiled_calls = 0
        """Forward passes the compiled graph has run (for tests and benchmarks)."""
        self._compiled: Any = None

    @property
    def active(self) -> bool:
        return self.error is None

    def forward(self, **inputs: Any) -> Any:
        """The model's forward: compiled for a one-token step, eager for anything wider."""
        if self.error is not None or inputs["input_ids"].shape[1] != 1:
            return self.model(**inputs)
        if self._compiled is None:
            import torch

            logger.info(
                "compiling decoding steps with torch.compile (once per process; one to "
                "two minutes on 2 cores)"
            )
            self._compiled = torch.compile(self.model.forward, dynamic=True, fullgraph=True)
        try:
            out = self._compiled(**inputs)
        except Exception as exc:  # compiling failed before the step ran: run it eagerly
            self.error = exc
            logger.warning(
                "torch.compile could not compile the decoding step (%s: %s); decoding "
                "continues without it. Check that a C++ compiler is installed, or build "
                "the runtime with compile_steps=False.",
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
            return self.model(**inputs)
        self.compiled_calls += 1
        return out
