"""The HTML view in a real headless Chromium: no console errors, and pixels that show it.

The page is served over HTTP from a local server, loaded by Debian's Chromium, and
checked three ways: the browser's own error reports, the DOM (what elements exist and
where they are), and a screenshot (whether the colours, marks and details panel the
DOM promises are really painted).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from langchain_pad import PADChatModel
from langchain_pad.callbacks import TokenRewardHandler
from langchain_pad.render import render_html
from langchain_pad.render._common import NEGATIVE_RGB, POSITIVE_RGB
from langchain_pad.traces import RunTrace, TokenRecord

from .browser import chromium, serve
from .conftest import PERTURBED_AXES as AXES

CHANGED_OUTLINE = (124, 58, 237)
WIDTH, HEIGHT = 1280, 900


@pytest.fixture(scope="module")
def real_traces(perturbed_reward_model_dir) -> list[RunTrace]:
    """The base model's answer (weights 0) and PAD's answer to one prompt, as recorded."""
    handler = TokenRewardHandler()
    llm = PADChatModel(max_tokens=32, reward_model=perturbed_reward_model_dir)
    question = "Explain what a black hole is."
    for label, weights in [
        ("base", {}),
        ("PAD: expert, not friendly", {"expertise": 0.75, "style": -0.5}),
    ]:
        llm.invoke(
            question,
            weights=weights or {"expertise": 0.0},
            config={"callbacks": [handler], "metadata": {"pad_label": label}},
        )
    return handler.traces


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "profile") as page:
        page.set_viewport(WIDTH, HEIGHT)
        yield page


def open_page(page, directory: Path, name: str) -> None:
    with serve(directory) as base:
        page.goto(f"{base}/{name}")


def boxes(page, selector: str) -> list[dict]:
    script = f"""Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => {{
        // a token that wraps has one rectangle per line: keep the widest
        const rects = Array.from(e.getClientRects());
        const r = rects.length ? rects.reduce((a, b) => (b.width > a.width ? b : a))
                               : e.getBoundingClientRect();
        return {{x: r.x, y: r.y, w: r.width, h: r.height, cls: e.className,
                 text: e.textContent, t: e.dataset.t, i: e.dataset.i,
                 bg: getComputedStyle(e).backgroundColor}};
    }})"""
    return page.evaluate(script)


def visible(box: dict) -> bool:
    """On screen and big enough to sample (a lone space or newline token is not)."""
    return box["w"] >= 6 and box["h"] >= 8 and box["y"] + box["h"] < HEIGHT


def region(image: Image.Image, box: dict, inset: int = 1) -> list[tuple[int, int, int]]:
    left, top = math.ceil(box["x"]) + inset, math.ceil(box["y"]) + inset
    right, bottom = math.floor(box["x"] + box["w"]) - inset, math.floor(box["y"] + box["h"]) - inset
    return [image.getpixel((x, y)) for x in range(left, right) for y in range(top, bottom)]


def dominant(pixels) -> tuple[int, int, int]:
    return Counter(pixels).most_common(1)[0][0]


def close(a, b, tolerance: int) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def over_white(css_rgba: str) -> tuple[int, int, int]:
    """What ``rgba(r, g, b, a)`` looks like painted on the page's white background."""
    values = [float(v) for v in css_rgba[css_rgba.index("(") + 1 : -1].split(",")]
    r, g, b = values[:3]
    alpha = values[3] if len(values) == 4 else 1.0
    return tuple(round(255 + (c - 255) * alpha) for c in (r, g, b))


def near_edge(image: Image.Image, box: dict, colour, band: int = 3) -> int:
    """How many pixels close to ``colour`` lie within ``band`` px of the box's left edge."""
    x0 = round(box["x"])
    hits = 0
    for x in range(x0 - band, x0 + band + 1):
        for y in range(round(box["y"]), round(box["y"] + box["h"])):
            if close(image.getpixel((x, y)), colour, 40):
                hits += 1
    return hits


# ---------------------------------------------------------------------- the harness


def test_the_harness_sees_console_errors_exceptions_and_failed_loads(browser, tmp_path):
    (tmp_path / "broken.html").write_text(
        "<!doctype html><link rel=icon href='data:,'><img src='/missing.png'>"
        "<script>console.error('boom'); throw new Error('bang');</script>"
    )
    open_page(browser, tmp_path, "broken.html")
    joined = "\n".join(browser.errors)
    assert "boom" in joined and "bang" in joined and "404" in joined, joined


# ---------------------------------------------------------------------- real answers


def test_base_and_pad_side_by_side_render_without_errors(browser, real_traces, tmp_path):
    base, pad = real_traces
    assert pad.summary["changed_tokens"] > 0
    render_html(base, pad, path=tmp_path / "compare.html", weights=pad.weights, beta=pad.beta)
    open_page(browser, tmp_path, "compare.html")
    assert browser.errors == []

    columns = boxes(browser, "section.trace")
    assert [h["text"] for h in boxes(browser, "section.trace h2")] == [base.title, pad.title]
    assert columns[1]["x"] >= columns[0]["x"] + columns[0]["w"]  # side by side
    assert abs(columns[1]["y"] - columns[0]["y"]) < 1
    for index, trace in enumerate(real_traces):
        spans = boxes(browser, f'.tok[data-t="{index}"]')
        assert len(spans) == len(trace.tokens)
        assert "".join(s["text"] for s in spans).replace("∅", "") == trace.text

    image = browser.screenshot()
    image.save(tmp_path / "compare.png")
    assert image.size == (WIDTH, HEIGHT)
    coloured = [s for s in boxes(browser, ".tok.pos, .tok.neg") if visible(s)]
    assert len(coloured) >= 5
    for span in coloured:
        background = dominant(region(image, span))
        assert close(background, over_white(span["bg"]), 8), (span, background)
        if "pos" in span["cls"].split():
            assert background[1] > background[0] and background[1] > background[2]
        else:
            assert background[0] > background[1] and background[0] > background[2]
    changed = [s for s in boxes(browser, '.tok.changed[data-t="1"]') if visible(s)]
    assert changed and all(near_edge(image, s, CHANGED_OUTLINE) >= 4 for s in changed)
    assert not boxes(browser, '.tok.changed[data-t="0"]')  # the base answer changed nothing


def test_hover_shows_the_axes_and_the_base_models_choice(browser, real_traces, tmp_path):
    base, pad = real_traces
    render_html(base, pad, path=tmp_path / "compare.html")
    open_page(browser, tmp_path, "compare.html")
    assert browser.evaluate("document.getElementById('detail').hidden") is True
    before = browser.screenshot()

    span = boxes(browser, '.tok.changed[data-t="1"]')[0]
    token = pad.tokens[int(span["i"])]
    browser.hover(span["x"] + span["w"] / 2, span["y"] + span["h"] / 2)
    assert browser.evaluate("document.getElementById('detail').hidden") is False
    (panel,) = boxes(browser, "#detail")
    assert "The base model preferred" in panel["text"]
    assert json.dumps(token.base_token_text, ensure_ascii=False) in panel["text"]
    assert all(axis in panel["text"] for axis in AXES)
    assert len(boxes(browser, "#detail tr.axis-row")) == len(AXES)

    after = browser.screenshot()
    after.save(tmp_path / "hover.png")
    inside_after, inside_before = region(after, panel), region(before, panel)
    assert dominant(inside_after) == (255, 255, 255)
    assert inside_after != inside_before  # the panel was painted where nothing was
    bars = [p for p in inside_after if close(p, POSITIVE_RGB, 30) or close(p, NEGATIVE_RGB, 30)]
    assert len(bars) > 20  # the per-axis contribution bars
    dark = [p for p in inside_after if sum(p) < 200]
    assert len(dark) > 100  # text
    assert browser.errors == []


def test_click_pins_the_panel_and_escape_closes_it(browser, real_traces, tmp_path):
    render_html(*real_traces, path=tmp_path / "compare.html")
    open_page(browser, tmp_path, "compare.html")
    first, second = boxes(browser, '.tok[data-t="1"]')[:2]
    browser.click(first["x"] + 2, first["y"] + first["h"] / 2)
    pinned_text = browser.evaluate("document.getElementById('detail').textContent")
    assert browser.evaluate("document.getElementById('detail').classList.contains('pinned')")
    browser.hover(second["x"] + 2, second["y"] + second["h"] / 2)
    assert browser.evaluate("document.getElementById('detail').textContent") == pinned_text
    browser.send("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape")
    assert browser.evaluate("document.getElementById('detail').hidden") is True
    assert browser.errors == []


# ---------------------------------------------------------------------- hostile tokens


HOSTILE = [
    "</script>",
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 1">',
    "&amp; &lt;",
    '"',
    "'",
    " ünïcödé 😀 中文",
    "\u2028",
    "<!--",
    "",
    "\n",
    "}",
]


def hostile_trace() -> RunTrace:
    rewards = [2.0, -2.0, 1.0, -0.5, float("nan"), float("inf"), 0.3, -1.5, 0.0, 1.2, -0.2, 0.7]
    tokens = [
        TokenRecord(
            run_id="hostile",
            index=i,
            token_id=i,
            text=text,
            base_logprob=-1.0,
            reward=reward,
            features=(reward, -reward, 0.5),
            base_rank=i % 3,
            changed=i % 3 != 0,
            base_token_id=100 + i,
            base_token_text="</script><b>x</b>" if i % 3 else text,
        )
        for i, (text, reward) in enumerate(zip(HOSTILE, rewards, strict=True))
    ]
    return RunTrace(
        run_id="hostile",
        label="<b>label</b> & </script>",
        prompt='</script><script>window.__pwned = 1</script> "&"',
        tokens=tokens,
        axes=["</script>", "a&b", "ü"],
        weights={"</script>": 1.0, "a&b": -1.0, "ü": 0.0},
        beta=1.0,
    )


def test_hostile_token_text_is_shown_as_text_never_run(browser, tmp_path):
    trace = hostile_trace()
    render_html(trace, path=tmp_path / "hostile.html", title="</title><script>x</script>")
    open_page(browser, tmp_path, "hostile.html")
    assert browser.errors == []
    assert browser.evaluate("window.__pwned") is None
    assert browser.evaluate("document.querySelectorAll('script').length") == 2
    assert (
        browser.evaluate("document.querySelectorAll('main img, main b, main script').length") == 0
    )
    assert browser.evaluate("document.title") == "</title><script>x</script>"
    spans = boxes(browser, ".tok[data-t]")
    assert [s["text"] for s in spans] == [t or "∅" for t in HOSTILE]
    assert browser.evaluate("document.querySelector('h2').textContent") == trace.label
    # the embedded data survived: hovering shows the exact token text and the base choice
    span = spans[1]
    browser.hover(span["x"] + 2, span["y"] + span["h"] / 2)
    detail = browser.evaluate("document.getElementById('detail').textContent")
    assert json.dumps(HOSTILE[1]) in detail
    assert json.dumps("</script><b>x</b>") in detail
    nan_span = spans[4]
    browser.hover(nan_span["x"] + 2, nan_span["y"] + nan_span["h"] / 2)
    assert "reward NaN" in browser.evaluate("document.getElementById('detail').textContent")
    assert browser.errors == []
