"""The terminal view: each answer's tokens shaded by reward, changed tokens marked.

Green means the preference rewarded a token, red that it penalized it, and the shade
deepens with the size of the reward (one scale for all answers shown together).
Tokens where PAD picked something other than the base model's first choice are
bold and underlined. Several answers stand side by side, one column each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from langchain_pad.render._common import (
    as_trace,
    blend_on_white,
    fmt,
    reward_scale,
    shade,
    token_rewards,
)
from langchain_pad.traces import RunTrace

__all__ = ["print_traces", "render_terminal"]

EMPTY_TOKEN = "∅"
"""Stands for a token with no text of its own (end of answer, half a character)."""


def render_terminal(
    *traces: RunTrace | Any,
    weights: Mapping[str, float] | None = None,
    beta: float | None = None,
) -> RenderableType:
    """A rich renderable of one or more answers (side by side), with a legend.

    ``weights`` (and ``beta``) score every answer's tokens with one preference
    instead of each run's own reward, so a base answer can be read through the eyes
    of the user that PAD steered for.
    """
    runs = [as_trace(item, i) for i, item in enumerate(traces)]
    if not runs:
        raise ValueError("render_terminal needs at least one trace or message.")
    rewards = [token_rewards(run, weights, beta) for run in runs]
    scale = reward_scale(rewards)
    bodies = [_tokens_text(run, r, scale) for run, r in zip(runs, rewards, strict=True)]
    table = Table(show_lines=False, expand=True, pad_edge=False)
    for run in runs:
        table.add_column(run.title, ratio=1, overflow="fold")
    table.add_row(*bodies)
    table.add_row(
        *[
            _summary_text(run, r if weights is not None else None)
            for run, r in zip(runs, rewards, strict=True)
        ]
    )
    parts: list[RenderableType] = []
    prompts = {run.prompt for run in runs if run.prompt}
    if len(prompts) == 1:
        parts.append(Text.assemble(("Prompt: ", "bold"), prompts.pop()))
    parts += [table, _legend(scale)]
    return Group(*parts)


def print_traces(
    *traces: RunTrace | Any,
    console: Console | None = None,
    weights: Mapping[str, float] | None = None,
    beta: float | None = None,
) -> None:
    """Print :func:`render_terminal` of these answers (to ``console`` or standard output)."""
    (console or Console()).print(render_terminal(*traces, weights=weights, beta=beta))


def _tokens_text(run: RunTrace, rewards: list[float | None], scale: float) -> Text:
    text = Text()
    for token, reward in zip(run.tokens, rewards, strict=True):
        style = ""
        colour = shade(reward, scale)
        if colour is not None:
            r, g, b = blend_on_white(*colour)
            style = f"rgb(0,0,0) on rgb({r},{g},{b})"
        if token.changed:
            style = f"{style} bold underline".strip()
        piece = token.text if token.text else (EMPTY_TOKEN if token.changed else "")
        text.append(piece, style=style or None)
    return text


def _summary_text(run: RunTrace, rescored: list[float | None] | None) -> Text:
    scored = [r for r in rescored or [] if r is not None]
    under = (
        f"; under the colouring preference {fmt(math.fsum(scored) / len(scored))}" if scored else ""
    )
    if not run.guided:
        return Text(f"{len(run.tokens)} tokens, not steered{under}", style="dim")
    summary = run.computed_summary()
    by_axis = summary.get("mean_reward_by_axis") or {}
    axes = ", ".join(f"{axis} {fmt(value)}" for axis, value in by_axis.items() if value)
    line = (
        f"{summary['tokens']} tokens, {summary['changed_tokens']} changed "
        f"({100 * summary['changed_share']:.0f}%); mean reward {fmt(summary['mean_reward'])}"
    )
    return Text(line + (f" ({axes})" if axes else "") + under, style="dim")


def _legend(scale: float) -> Text:
    legend = Text("reward ", style="dim")
    for fraction in (-1.0, -0.5, -0.1, 0.1, 0.5, 1.0):
        colour = shade(fraction * scale, scale)
        if colour is None:
            continue
        r, g, b = blend_on_white(*colour)
        legend.append(f" {fmt(fraction * scale, 1)} ", style=f"rgb(0,0,0) on rgb({r},{g},{b})")
    legend.append("   ")
    legend.append("changed", style="bold underline")
    legend.append(" = PAD replaced the base model's first choice", style="dim")
    return legend
