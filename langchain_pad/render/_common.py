"""What both renderers share: turning inputs into traces, and rewards into colours."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_pad.traces import RunTrace

POSITIVE_RGB = (22, 163, 74)
"""Green: the preference rewarded this token."""
NEGATIVE_RGB = (220, 38, 38)
"""Red: the preference penalized this token."""
MIN_ALPHA = 0.12
"""Opacity of the faintest non-zero shade, so that small rewards still show."""


def as_trace(item: Any, index: int = 0) -> RunTrace:
    """A :class:`RunTrace` as it is, or one rebuilt from a finished chat message."""
    if isinstance(item, RunTrace):
        return item
    if hasattr(item, "response_metadata"):
        return RunTrace.from_message(item, run_id=str(getattr(item, "id", "") or index))
    raise TypeError(f"Expected a RunTrace or a PADChatModel message, got {type(item).__name__}.")


def token_rewards(
    trace: RunTrace, weights: Mapping[str, float] | None = None, beta: float | None = None
) -> list[float | None]:
    """Each token's reward: the run's own, or ``beta * w . phi`` under other ``weights``.

    Scoring every run with the same ``weights`` shows how one user's preference rates
    the tokens of another run, e.g. the base model's answer next to the PAD answer.
    """
    if weights is None:
        return [t.reward for t in trace.tokens]
    scale = beta if beta is not None else (trace.beta if trace.beta is not None else 1.0)
    w = [float(weights.get(axis, 0.0)) for axis in trace.axes]
    out: list[float | None] = []
    for token in trace.tokens:
        if token.features is None or len(token.features) != len(w):
            out.append(None)
        else:
            out.append(scale * math.fsum(wi * f for wi, f in zip(w, token.features, strict=True)))
    return out


def reward_scale(rewards: Sequence[Sequence[float | None]]) -> float:
    """The largest finite ``|reward|`` over all runs: one shared scale makes runs comparable."""
    finite = [abs(r) for rs in rewards for r in rs if r is not None and math.isfinite(r)]
    peak = max(finite, default=0.0)
    return peak if peak > 0 else 1.0


def shade(reward: float | None, scale: float) -> tuple[tuple[int, int, int], float] | None:
    """``(rgb, alpha)`` for a reward on a scale of ``+-scale``; None for no colour."""
    if reward is None or math.isnan(reward) or reward == 0:
        return None
    strength = min(abs(reward) / scale, 1.0) if math.isfinite(reward) else 1.0
    rgb = POSITIVE_RGB if reward > 0 else NEGATIVE_RGB
    return rgb, MIN_ALPHA + (1.0 - MIN_ALPHA) * strength


def blend_on_white(rgb: tuple[int, int, int], alpha: float) -> tuple[int, int, int]:
    """The opaque colour of ``rgb`` at ``alpha`` over white (terminals have no alpha)."""
    r, g, b = (round(255 + (c - 255) * alpha) for c in rgb)
    return r, g, b


def fmt(value: float | None, digits: int = 2, sign: bool = True) -> str:
    """A number for people: fixed digits, explicit sign, and words for NaN/infinities."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    value = round(value, digits) + 0.0  # no "-0.00" for a value that rounds to zero
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
