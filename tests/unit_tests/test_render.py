"""Renderers without a browser: terminal colours and marks, HTML structure and escaping.

The page itself is checked in a real Chromium in tests/integration_tests.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from rich.console import Console

from langchain_pad.render import print_traces, render_html, render_terminal
from langchain_pad.render._common import (
    POSITIVE_RGB,
    blend_on_white,
    fmt,
    reward_scale,
    shade,
    token_rewards,
)
from langchain_pad.traces import RunTrace, TokenRecord

AXES = ["expertise", "style"]


def trace(texts, rewards, changed=(), label="", weights=None, prompt="Why?") -> RunTrace:
    tokens = [
        TokenRecord(
            run_id=label or "run",
            index=i,
            token_id=i,
            text=text,
            base_logprob=-1.0,
            reward=reward,
            features=None if reward is None else (reward, 2 * reward),
            base_rank=1 if i in changed else 0,
            changed=i in changed,
            base_token_id=900 + i if i in changed else i,
            base_token_text=f"<base {i}>" if i in changed else text,
        )
        for i, (text, reward) in enumerate(zip(texts, rewards, strict=True))
    ]
    return RunTrace(
        run_id=label or "run",
        label=label,
        prompt=prompt,
        tokens=tokens,
        axes=AXES,
        weights=weights if weights is not None else {"expertise": 1.0, "style": 0.0},
        beta=1.0,
    )


def ansi(*traces, **kwargs) -> str:
    console = Console(record=True, force_terminal=True, color_system="truecolor", width=100)
    print_traces(*traces, console=console, **kwargs)
    return console.export_text(styles=True)


# ---------------------------------------------------------------------- colours


def test_shades_follow_sign_and_size_on_a_shared_scale():
    assert shade(0.0, 1.0) is None and shade(None, 1.0) is None
    assert shade(float("nan"), 1.0) is None
    (pos, strong), (neg, _) = shade(2.0, 2.0), shade(-1.0, 2.0)
    assert pos == POSITIVE_RGB and neg != POSITIVE_RGB
    assert strong == 1.0 and shade(1.0, 2.0)[1] < strong
    assert shade(float("inf"), 2.0)[1] == 1.0
    assert reward_scale([[0.5, None, float("nan")], [-3.0]]) == 3.0
    assert reward_scale([[0.0, None]]) == 1.0


def test_numbers_for_people():
    assert fmt(-0.0001) == "+0.00"
    assert fmt(1.234, 1) == "+1.2"
    assert fmt(float("nan")) == "NaN" and fmt(float("-inf")) == "-inf" and fmt(None) == "n/a"


def test_rescoring_with_other_weights_uses_the_features():
    run = trace(["a", "b"], [1.0, -0.5])
    assert token_rewards(run) == [1.0, -0.5]
    # features are (r, 2r): with w = (0, 1) and beta 2 the reward is 2 * 2r
    assert token_rewards(run, {"style": 1.0}, beta=2.0) == [4.0, -2.0]


# ---------------------------------------------------------------------- terminal


def test_terminal_shades_tokens_and_marks_changed_ones():
    run = trace(["Hello", " world", "!"], [2.0, -2.0, 0.0], changed={1}, label="PAD")
    out = ansi(run)
    r, g, b = blend_on_white(POSITIVE_RGB, 1.0)
    assert re.search(rf"48;2;{r};{g};{b}m[^\x1b]*Hello", out)
    world = re.search(r"\x1b\[([0-9;]*)m world", out)
    assert world and "4" in world.group(1).split(";") and "1" in world.group(1).split(";")
    assert re.search(r"\x1b\[0m!|[^m]!", out)  # zero reward: no background
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "PAD" in plain and "1 changed" in plain and "Prompt: Why?" in plain


def test_terminal_shows_runs_side_by_side():
    base = trace(["same"], [None], label="base", weights={})
    pad = trace(["other"], [1.0], changed={0}, label="PAD")
    console = Console(record=True, width=80)
    console.print(render_terminal(base, pad))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "base" in line)
    assert "PAD" in header
    assert "not steered" in text


def test_renderers_refuse_nothing_to_draw():
    with pytest.raises(ValueError):
        render_terminal()
    with pytest.raises(ValueError):
        render_html()
    with pytest.raises(TypeError):
        render_html("just a string")


# ---------------------------------------------------------------------- html

HOSTILE = ["</script>", "<b>&amp;</b>", '"q"', "'s'", "ü 😀", "\u2028", "", "<!--"]


def embedded_json(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="pad-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match.group(1))


def test_html_escapes_every_token_and_embeds_exact_data(tmp_path):
    run = trace(HOSTILE, [1.0, -1.0, 0.5, float("nan"), float("inf"), -0.2, 0.1, 0.0], changed={1})
    run.label = "</script><b>x"
    run.prompt = "<i>prompt</i> & </script>"
    page = render_html(run, path=tmp_path / "page.html", title="<t>")
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == page
    # only the page's own two scripts end a script element; no token opens a tag
    assert page.count("</script>") == 2 and page.count("<script") == 2
    for raw in ("<b>x", "<b>&amp;", "<i>", "<!--", "<t>"):
        assert raw not in page
    spans = re.findall(r'<span class="tok[^"]*" data-t="0" data-i="\d+"[^>]*>(.*?)</span>', page)
    assert [html.unescape(s) for s in spans] == [t or "∅" for t in HOSTILE]
    data = embedded_json(page)
    tokens = data["traces"][0]["tokens"]
    assert [t["text"] for t in tokens] == HOSTILE
    assert tokens[3]["reward"] == "NaN" and tokens[4]["reward"] == "+inf"
    assert tokens[1]["base_token"] == "<base 1>" and tokens[1]["changed"] is True
    assert data["traces"][0]["title"] == "</script><b>x"


def test_html_page_is_self_contained():
    page = render_html(trace(["a"], [1.0]))
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from anywhere
    assert "<style>" in page and 'id="detail"' in page


def test_html_side_by_side_shares_one_scale_and_one_prompt():
    base = trace(["x", "y"], [0.5, -0.5], label="base")
    pad = trace(["x", "z"], [4.0, -4.0], changed={1}, label="PAD")
    page = render_html(base, pad)
    assert page.count('<section class="trace"') == 2
    assert "repeat(2, minmax(0, 1fr))" in page
    assert page.count("<b>Prompt</b>") == 1  # same prompt: shown once, above the columns
    alphas = [float(a) for a in re.findall(r'data-t="0"[^>]*rgba\([^)]*, ([0-9.]+)\)', page)]
    assert alphas and max(alphas) < 0.5  # the base's small rewards look small next to PAD's
    other = trace(["q"], [1.0], label="other", prompt="Another question")
    assert render_html(base, other).count("<b>Prompt</b>") == 2


def test_html_coloured_by_one_preference_explains_with_that_preference():
    base = trace(["x", "y"], [0.0, 0.0], label="base", weights={"expertise": 0.0})
    page = render_html(base, weights={"style": 2.0}, beta=0.5)
    data = embedded_json(page)["traces"][0]
    # features are (r, 2r) with r = 0 here: use a trace whose features are not zero
    assert data["weights"] == [0.0, 2.0] and data["beta"] == 0.5
    base.tokens[0] = TokenRecord("base", 0, 0, "x", -1.0, 0.0, (1.0, 3.0), 0, False, 0, "x")
    page = render_html(base, weights={"style": 2.0}, beta=0.5)
    token = embedded_json(page)["traces"][0]["tokens"][0]
    assert token["reward"] == 3.0 and token["own_reward"] == 0.0
    assert "mean reward under the colouring preference +1.50" in page
    assert "under the colouring preference +1.50" in ansi(base, weights={"style": 2.0}, beta=0.5)


def test_html_from_messages_of_the_chat_model(tiny_chat_model):
    llm = tiny_chat_model(max_tokens=6)
    base = llm.invoke("hi", weights=[0.0, 0.0, 0.0])
    pad = llm.invoke("hi", raw_weights=[3.0, 0.0, -1.0])
    page = render_html(base, pad, weights={"expertise": 3.0, "style": -1.0})
    data = embedded_json(page)
    assert [len(t["tokens"]) for t in data["traces"]] == [6, 6]
    assert data["traces"][1]["title"] == "PAD expertise +3, style -1"
    assert data["traces"][0]["title"] == "PAD, all weights 0"
    assert ansi(base, pad)
