"""A self-contained HTML page of what PAD changed, answers side by side.

One file, no network: CSS and JavaScript are inline and the per-token data is
embedded as JSON. Tokens are drawn by Python (escaped, already coloured), so the page
reads even with scripts off; the script only adds the details panel: hovering a
token shows its reward, ``phi`` per axis and what each axis added, the base model's
log-probability and rank, and the token the base model would have picked; a click
pins the panel (click again or press Escape to release it).

Token text is untrusted model output: it goes through ``html.escape`` in the markup,
and into the JSON with ``<``, ``>``, ``&`` and the JavaScript line separators
escaped, so no token (``</script>`` included) can end an element or run code.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_pad.render._common import (
    NEGATIVE_RGB,
    POSITIVE_RGB,
    as_trace,
    fmt,
    reward_scale,
    shade,
    token_rewards,
)
from langchain_pad.traces import RunTrace

__all__ = ["render_html"]

EMPTY_TOKEN = "∅"
"""Stands for a token with no text of its own (end of answer, half a character)."""


def render_html(
    *traces: RunTrace | Any,
    path: str | Path | None = None,
    title: str = "What PAD changed",
    weights: Mapping[str, float] | None = None,
    beta: float | None = None,
) -> str:
    """The page for one or more answers (one column each); written to ``path`` if given.

    Pass two or more answers to the same prompt (say, the base model's and PAD's) to
    compare them side by side; all columns share one colour scale. ``weights`` (and
    ``beta``) colour every answer by that one preference (``beta * w . phi``) instead
    of each run's own reward: a base answer then shows where it falls short of what
    the steered user wants. Returns the HTML text.
    """
    runs = [as_trace(item, i) for i, item in enumerate(traces)]
    if not runs:
        raise ValueError("render_html needs at least one trace or message.")
    rewards = [token_rewards(run, weights, beta) for run in runs]
    scale = reward_scale(rewards)
    prompts = [run.prompt for run in runs]
    shared_prompt = prompts[0] if prompts and all(p == prompts[0] for p in prompts) else None
    columns = "\n".join(
        _column(i, run, r, scale, show_prompt=shared_prompt is None, rescored=weights is not None)
        for i, (run, r) in enumerate(zip(runs, rewards, strict=True))
    )
    data = {
        "scale": _json_number(scale),
        "scored_with": dict(weights) if weights is not None else None,
        "traces": [
            _trace_data(run, r, weights, beta) for run, r in zip(runs, rewards, strict=True)
        ],
    }
    page = _PAGE.format(
        title=html.escape(title),
        prompt=(
            f'<p class="prompt"><b>Prompt</b> <span>{html.escape(shared_prompt)}</span></p>'
            if shared_prompt
            else ""
        ),
        scored_with=(
            '<p class="note">Coloured by one preference for all columns: '
            + html.escape(", ".join(f"{a} {w:+g}" for a, w in weights.items()))
            + "</p>"
            if weights is not None
            else ""
        ),
        legend=_legend(scale),
        count=len(runs),
        columns=columns,
        data=_script_json(data),
        css=_CSS,
        js=_JS,
    )
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page


# ---------------------------------------------------------------------- markup


def _column(
    index: int,
    run: RunTrace,
    rewards: list[float | None],
    scale: float,
    show_prompt: bool,
    rescored: bool,
) -> str:
    spans = []
    for i, (token, reward) in enumerate(zip(run.tokens, rewards, strict=True)):
        classes = ["tok"]
        style = ""
        colour = shade(reward, scale)
        if colour is not None:
            (r, g, b), alpha = colour
            style = f' style="background-color: rgba({r}, {g}, {b}, {alpha:.3f})"'
            classes.append("pos" if (reward or 0) > 0 else "neg")
        if token.changed:
            classes.append("changed")
        text = token.text
        if not text:
            classes.append("empty")
            text = EMPTY_TOKEN
        spans.append(
            f'<span class="{" ".join(classes)}" data-t="{index}" data-i="{i}"{style}>'
            f"{html.escape(text)}</span>"
        )
    prompt = (
        f'<p class="prompt"><b>Prompt</b> <span>{html.escape(run.prompt)}</span></p>'
        if show_prompt and run.prompt
        else ""
    )
    return (
        f'<section class="trace" id="trace-{index}" data-trace="{index}">\n'
        f"<h2>{html.escape(run.title)}</h2>\n{prompt}{_stats(run, rewards if rescored else None)}\n"
        f'<div class="tokens">{"".join(spans)}</div>\n</section>'
    )


def _stats(run: RunTrace, rescored: list[float | None] | None) -> str:
    scored = [r for r in rescored or [] if r is not None]
    under = (
        f'<p class="stats">mean reward under the colouring preference '
        f"{fmt(math.fsum(scored) / len(scored))}</p>"
        if scored
        else ""
    )
    if not run.guided:
        return f'<p class="stats">{len(run.tokens)} tokens, not steered</p>{under}'
    summary = run.computed_summary()
    line = (
        f'<p class="stats">{summary["tokens"]} tokens, {summary["changed_tokens"]} changed '
        f"({100 * summary['changed_share']:.0f}%), mean reward {fmt(summary['mean_reward'])}</p>"
    )
    rows = []
    by_axis = summary.get("mean_reward_by_axis") or {}
    mean_phi = summary.get("mean_features") or {}
    for axis in run.axes:
        rows.append(
            f"<tr><th>{html.escape(axis)}</th><td>{fmt(run.weights.get(axis, 0.0), 1)}</td>"
            f"<td>{fmt(mean_phi.get(axis))}</td><td>{fmt(by_axis.get(axis))}</td></tr>"
        )
    table = (
        '<table class="axes"><thead><tr><th>axis</th><th>w</th><th>mean &phi;</th>'
        f"<th>mean reward</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return line + under + table


def _legend(scale: float) -> str:
    stops = []
    for fraction in (-1.0, -0.5, -0.1, 0.1, 0.5, 1.0):
        colour = shade(fraction * scale, scale)
        if colour is None:
            continue
        (r, g, b), alpha = colour
        stops.append(
            f'<span class="swatch" style="background-color: rgba({r}, {g}, {b}, {alpha:.3f})">'
            f"{fmt(fraction * scale, 1)}</span>"
        )
    return (
        '<div class="legend"><span>reward</span>'
        + "".join(stops)
        + '<span class="tok changed">changed</span>'
        + "<span>= PAD replaced the base model's first choice; hover or click a token</span>"
        + "</div>"
    )


# ---------------------------------------------------------------------- data


def _trace_data(
    run: RunTrace,
    rewards: list[float | None],
    weights: Mapping[str, float] | None,
    beta: float | None,
) -> dict[str, Any]:
    """The JSON the details panel reads; with ``weights`` its ``w`` and ``beta`` are the
    colouring preference's, so each panel's per-axis parts add up to the shown reward."""
    if weights is None:
        weights, beta = run.weights, run.beta
    elif beta is None:
        beta = run.beta if run.beta is not None else 1.0
    return {
        "title": run.title,
        "axes": list(run.axes),
        "weights": [_json_number(weights.get(axis, 0.0)) for axis in run.axes],
        "beta": _json_number(beta),
        "tokens": [
            {
                "text": t.text,
                "reward": _json_number(reward),
                "own_reward": _json_number(t.reward),
                "features": [_json_number(f) for f in t.features] if t.features else None,
                "base_logprob": _json_number(t.base_logprob),
                "base_rank": t.base_rank,
                "changed": t.changed,
                "base_token": t.base_token_text,
            }
            for t, reward in zip(run.tokens, rewards, strict=True)
        ],
    }


def _json_number(value: float | None) -> float | str | None:
    """JSON has no NaN or infinities: those travel as strings the page prints as they are."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")


def _script_json(data: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, ``<!--`` or line separators."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


_POS = "{}, {}, {}".format(*POSITIVE_RGB)
_NEG = "{}, {}, {}".format(*NEGATIVE_RGB)

_CSS = (
    (
        """
:root { color-scheme: light; --pos: rgb(POS); --neg: rgb(NEG); }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 24px 220px; font: 15px/1.5 system-ui, sans-serif;
  color: #1f2328; background: #ffffff; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 0 0 4px; }
.prompt { margin: 4px 0 10px; white-space: pre-wrap; }
.prompt span { font-family: ui-monospace, monospace; background: #f3f4f6; padding: 1px 4px; }
.note { color: #57606a; margin: 4px 0; }
.legend { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 6px 0 16px;
  color: #57606a; font-size: 13px; }
.swatch { padding: 1px 6px; border-radius: 3px; color: #111; font-variant-numeric: tabular-nums; }
.columns { display: grid; gap: 20px; align-items: start; }
.trace { border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 14px; min-width: 0; }
.stats { color: #57606a; font-size: 13px; margin: 0 0 6px; }
table.axes { border-collapse: collapse; font-size: 12px; margin-bottom: 10px;
  font-variant-numeric: tabular-nums; }
table.axes th, table.axes td { padding: 1px 8px 1px 0; text-align: right; }
table.axes th:first-child { text-align: left; }
.tokens { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace;
  font-size: 14px; line-height: 1.9; }
.tok { border-radius: 2px; cursor: pointer; }
.tok.changed { outline: 2px solid #7c3aed; outline-offset: -1px; font-weight: 700; }
.tok.empty { color: #8c959f; }
.tok.active { box-shadow: 0 0 0 2px #0969da; }
#detail { position: fixed; right: 16px; bottom: 16px; width: min(440px, calc(100vw - 32px));
  background: #ffffff; border: 1px solid #8c959f; border-radius: 8px; padding: 10px 12px;
  box-shadow: 0 4px 16px rgba(0, 0, 0, 0.18); font-size: 13px; }
#detail[hidden] { display: none; }
#detail.pinned { border-color: #0969da; }
#detail h3 { margin: 0 0 6px; font-size: 14px; }
#detail code { background: #f3f4f6; padding: 0 4px; white-space: pre; }
#detail table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
#detail td, #detail th { padding: 1px 6px 1px 0; text-align: right; }
#detail td:first-child, #detail th:first-child { text-align: left; }
.bar { display: inline-block; height: 8px; vertical-align: middle; border-radius: 2px; }
.bar.pos { background: var(--pos); } .bar.neg { background: var(--neg); }
.base-choice { margin: 6px 0 0; }
"""
    )
    .replace("POS", _POS)
    .replace("NEG", _NEG)
)

_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("pad-data").textContent);
  var panel = document.getElementById("detail");
  var pinned = null;
  var active = null;

  function num(v, digits) {
    if (v === null || v === undefined) return "n/a";
    if (typeof v !== "number") return String(v);
    return (v >= 0 ? "+" : "") + v.toFixed(digits === undefined ? 3 : digits);
  }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  function shown(text) {
    return text === "" ? "(no text)" : JSON.stringify(text);
  }
  function bar(value, peak) {
    var span = el("span", null, "bar " + (value >= 0 ? "pos" : "neg"));
    var width = typeof value === "number" && peak > 0 ? Math.min(Math.abs(value) / peak, 1) : 0;
    span.style.width = Math.round(60 * width) + "px";
    return span;
  }
  function fill(t, i) {
    var trace = data.traces[t];
    var token = trace.tokens[i];
    panel.replaceChildren();
    var head = el("h3");
    head.append("Token " + (i + 1) + " of " + trace.title + ": ");
    head.append(el("code", shown(token.text)));
    panel.append(head);
    var facts = el("p");
    var own = token.own_reward !== null && token.own_reward !== token.reward
      ? " (this run's own " + num(token.own_reward) + ")" : "";
    facts.append("reward " + num(token.reward) + own + " \\u00b7 base log-prob " +
      num(token.base_logprob) + " \\u00b7 base rank " +
      (token.base_rank === null ? "n/a" : token.base_rank));
    panel.append(facts);
    if (token.features) {
      var table = el("table", null, "features");
      var headRow = el("tr");
      ["axis", "\\u03c6", "w", "\\u03b2\\u00b7w\\u00b7\\u03c6", ""].forEach(function (h) {
        headRow.append(el("th", h));
      });
      table.append(headRow);
      var beta = typeof trace.beta === "number" ? trace.beta : 1;
      var parts = token.features.map(function (f, k) {
        var w = trace.weights[k];
        return typeof f === "number" && typeof w === "number" ? beta * w * f : null;
      });
      var peak = Math.max.apply(null, parts.map(function (p) {
        return typeof p === "number" ? Math.abs(p) : 0;
      }).concat([1e-12]));
      token.features.forEach(function (f, k) {
        var row = el("tr", null, "axis-row");
        row.append(el("td", trace.axes[k]), el("td", num(f)), el("td", num(trace.weights[k], 1)),
          el("td", num(parts[k])));
        var cell = el("td");
        cell.append(bar(parts[k], peak));
        row.append(cell);
        table.append(row);
      });
      panel.append(table);
    }
    var choice = el("p", null, "base-choice");
    if (token.changed) {
      choice.append("PAD changed this token. The base model preferred ");
      choice.append(el("code", shown(token.base_token === null ? "" : token.base_token)));
    } else if (token.features) {
      choice.append("Same token as the base model's first choice.");
    }
    panel.append(choice);
    panel.hidden = false;
  }
  function activate(span) {
    if (active) active.classList.remove("active");
    active = span;
    if (span) span.classList.add("active");
  }
  document.querySelectorAll(".tok[data-t]").forEach(function (span) {
    var t = Number(span.dataset.t), i = Number(span.dataset.i);
    span.addEventListener("mouseenter", function () {
      if (pinned) return;
      activate(span);
      fill(t, i);
    });
    span.addEventListener("click", function (event) {
      event.stopPropagation();
      if (pinned === span) {
        pinned = null;
        panel.classList.remove("pinned");
        return;
      }
      pinned = span;
      activate(span);
      fill(t, i);
      panel.classList.add("pinned");
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      pinned = null;
      activate(null);
      panel.classList.remove("pinned");
      panel.hidden = true;
    }
  });
})();
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>{css}</style>
</head>
<body>
<header>
<h1>{title}</h1>
{prompt}
{scored_with}
{legend}
</header>
<main class="columns" style="grid-template-columns: repeat({count}, minmax(0, 1fr))">
{columns}
</main>
<aside id="detail" hidden aria-live="polite"></aside>
<script type="application/json" id="pad-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""
