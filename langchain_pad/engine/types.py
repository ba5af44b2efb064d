"""Plain data that crosses the engine boundary: what to decode and what came out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import torch

    from langchain_pad.records import PADStepRecord

FinishReason = Literal["stop", "length", "cancelled"]

SEED_MIN = -(2**63)
SEED_MAX = 2**64 - 1
"""The seeds ``torch.Generator.manual_seed`` accepts."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingParams:
    """How one conversation is decoded. ``temperature == 0`` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    """Size of the candidate set each step picks from (PAD scores these candidates)."""
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        # Checked here, where the request is built, so that a bad value fails its own
        # caller with the parameter's name instead of a whole batch on the decoding thread.
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(
                f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}."
            )
        if not _is_number(self.temperature) or not (
            math.isfinite(self.temperature) and self.temperature >= 0
        ):
            raise ValueError(
                f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}."
            )
        if not _is_number(self.top_p) or not (0 < self.top_p <= 1):
            raise ValueError(f"top_p must be a number in (0, 1], got {self.top_p!r}.")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise ValueError(f"top_k must be None or an integer >= 1, got {self.top_k!r}.")
        if self.seed is not None and (
            not _is_int(self.seed) or not (SEED_MIN <= self.seed <= SEED_MAX)
        ):
            raise ValueError(
                f"seed must be None or an integer in [{SEED_MIN}, {SEED_MAX}] (what the "
                f"sampler's generator accepts), got {self.seed!r}."
            )
        if not _is_number(self.repetition_penalty) or not (
            math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0
        ):
            raise ValueError(
                f"repetition_penalty must be a finite number > 0 (1 = off), "
                f"got {self.repetition_penalty!r}."
            )
        if isinstance(self.stop, str) or not isinstance(self.stop, tuple):
            raise ValueError(f"stop must be a tuple of strings, got {self.stop!r}.")
        for s in self.stop:
            if not isinstance(s, str) or s == "":
                raise ValueError(f"stop sequences must be non-empty strings, got {s!r}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class RowGrammar(Protocol):
    """What the loop needs of a per-row grammar (``langchain_pad.engine.grammar``)."""

    def allowed_mask(self) -> torch.Tensor:
        """``bool[vocab]``: the tokens that may come next."""

    def consume(self, token_id: int) -> None:
        """Advance past the chosen token (raises if the grammar did not allow it)."""

    def is_stopped(self) -> bool:
        """The grammar has ended: nothing but the end of the answer can follow."""

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar dictates next, in order, not yet consumed ([]: a choice)."""


@dataclass(frozen=True)
class GenerationRequest:
    """One conversation to decode: its prompt token ids and how to decode it.

    ``guidance`` is an opaque per-row payload handed to the step guides (for PAD:
    the user's preference weights). The loop itself never looks inside it.
    """

    prompt_ids: tuple[int, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    guidance: Any = None
    grammar: RowGrammar | None = field(default=None, compare=False)
    """This row's grammar state (a tool call, a structured answer): the loop masks the
    tokens it does not allow before the candidates are taken; None: unconstrained."""

    def __post_init__(self) -> None:
        if len(self.prompt_ids) == 0:
            raise ValueError("prompt_ids is empty: a request needs at least one prompt token.")


@dataclass(frozen=True)
class TokenEvent:
    """One generated token of one row, as the loop streams it.

    ``text`` is the text this token released: it can be empty when the token ends in
    the middle of a multi-byte character, or while it could be the start of a stop
    sequence (that text is released later, or dropped if the stop sequence completes).
    """

    row: int
    token_id: int
    text: str
    logprob: float | None
    """Log-probability of the token under the base model (before any guidance); None
    for a token the row's grammar forced, which the loop takes without asking the model
    (see :mod:`langchain_pad.engine.forcing`)."""
    finish_reason: FinishReason | None = None
    record: PADStepRecord | None = None
    """Per-token data the step guides attached (e.g. PAD rewards); None without guides,
    and for tokens a grammar forced (no guide scored them)."""
    token_text: str = ""
    """This token's own share of the decoded text, before stop sequences hold text back.

    ``text`` is what the caller may show now; ``token_text`` is what this token wrote,
    so that explanations attribute each character to the token that produced it. Over a
    row the ``token_text`` pieces join into the full decoded text (stop text included).
    """


@dataclass
class GenerationOutput:
    """A finished row, for callers that want whole results instead of a stream."""

    token_ids: list[int]
    text: str
    logprobs: list[float | None]
    finish_reason: FinishReason
    prompt_tokens: int
    records: list[PADStepRecord] = field(default_factory=list)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)
