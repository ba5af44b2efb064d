"""Preference pairs: a prompt, the response the user preferred, and the one they did not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PreferencePair:
    """One judgement, as text. ``axis`` names the preference axis (stage 1 only)."""

    prompt: str
    chosen: str
    rejected: str
    axis: str | None = None
    chosen_complete: bool = False
    """The chosen answer ended on its own: its end-of-turn token is part of what was liked."""
    rejected_complete: bool = False

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected"):
            if not getattr(self, name).strip():
                raise ValueError(
                    f"PreferencePair.{name} is empty: every pair needs all three texts."
                )
        if self.chosen == self.rejected:
            raise ValueError(
                "PreferencePair.chosen and .rejected are the same text: no preference."
            )


@dataclass(frozen=True)
class TokenizedPair:
    """A pair as token ids: the chat-templated prompt and each response's tokens."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    axis: int | None = None


def tokenize_pair(
    tokenizer: Any,
    pair: PreferencePair,
    axes: list[str] | None = None,
    *,
    eos_token_id: int | None = None,
) -> TokenizedPair:
    """Tokenize a pair the way the chat model will see it: chat template, then response.

    With ``eos_token_id``, a response marked complete ends with that token, so the reward
    model also learns where each pole stops (what makes a concise answer concise).
    """
    from langchain_pad._messages import render_prompt

    prompt_ids = render_prompt(tokenizer, [{"role": "user", "content": pair.prompt}])
    chosen = tokenizer(pair.chosen, add_special_tokens=False)["input_ids"]
    rejected = tokenizer(pair.rejected, add_special_tokens=False)["input_ids"]
    if eos_token_id is not None:
        chosen = [*chosen, eos_token_id] if pair.chosen_complete else chosen
        rejected = [*rejected, eos_token_id] if pair.rejected_complete else rejected
    axis: int | None = None
    if pair.axis is not None:
        if axes is None or pair.axis not in axes:
            raise ValueError(f"unknown axis {pair.axis!r}; the reward model's axes are {axes}.")
        axis = axes.index(pair.axis)
    return TokenizedPair(tuple(prompt_ids), tuple(chosen), tuple(rejected), axis)
