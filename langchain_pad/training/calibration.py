"""Anchor calibration: the weight of each pole's anchor profile, picked by decoding.

``calibrate_anchors`` decodes the calibration prompts at every candidate weight of each
pole, reads the axis's judge against plain greedy, and keeps the best fluent weight;
``train`` runs it as its last step and ``recalibrate_anchors`` runs it alone. Base and
PAD rows decode under the library's degeneration guard, so a pole is calibrated for
what users get. The picked magnitudes become the PersRM's ``calibration.json`` (what
strength +-1 means, ``langchain_pad.calibration``); the anchors are written in pole
units (format 2: each pole's anchor is strength +-1 on its axis).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_pad.axes import PreferenceAxis
    from langchain_pad.models import LoadedModel
    from langchain_pad.reward_model import PersonalizedRewardModel
    from langchain_pad.training.pipeline import AxisReport, TrainSettings

__all__ = ["calibrate_anchors", "pick_magnitude", "pole_wordings", "write_anchors"]


def calibrate_anchors(
    loaded: LoadedModel,
    rm: PersonalizedRewardModel,
    axes: list[PreferenceAxis],
    reports: list[AxisReport],
    prompts: list[str],
    settings: TrainSettings,
    *,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Pick each pole's weight on training prompts, at the length its judge is read at.

    A pole's weight is the magnitude that moves the judge against plain greedy on the
    most calibration prompts while the answers stay fluent (per-prompt perplexity ratio
    to greedy at most ``max_perplexity_ratio`` in the median and
    ``max_worst_perplexity_ratio`` on the worst prompt: one answer in sixteen that
    reads as nonsense is a failure a median hides); ties go to the smaller weight. Taking the
    best rather than the first weight over a bar matters: a bar just reached on a few
    prompts falls back below it on new ones. A looping answer is no win, as in the
    benchmarks: a loop adds words and repeats jargon, so the judge alone would reward
    the weights that break the answers.
    """
    from langchain_pad.evaluation import DecodeRow, decode_conditions, loops, perplexities
    from langchain_pad.judges import judge

    names = rm.axes
    k = len(prompts)
    by_length: dict[int, list[PreferenceAxis]] = {}
    for axis in axes:
        length = settings.calibration_new_tokens or axis.eval_new_tokens
        by_length.setdefault(length, []).append(axis)
    for length, group in sorted(by_length.items()):
        rows = [DecodeRow(p) for p in prompts]
        plan: list[tuple[PreferenceAxis, int, float]] = []
        for axis in group:
            for sign in (-1, 1):
                for magnitude in settings.calibration_magnitudes:
                    plan.append((axis, sign, magnitude))
                    weights = tuple(sign * magnitude if n == axis.name else 0.0 for n in names)
                    rows.extend(DecodeRow(p, weights=weights) for p in prompts)
        outputs = decode_conditions(
            loaded,
            rows,
            reward_model=rm,
            max_new_tokens=length,
            repetition_penalty=settings.calibration_repetition_penalty,
            plausibility=settings.calibration_plausibility,
            description=f"calibrating anchors ({length} tokens)",
            show_progress=show_progress,
        )
        ppl = perplexities(loaded, [r.prompt for r in rows], [o.token_ids for o in outputs])
        base_out, base_ppl = outputs[:k], ppl[:k]
        for i, (axis, sign, magnitude) in enumerate(plan):
            block = slice(k * (i + 1), k * (i + 2))
            score = judge(axis.judge)
            looping = [loops(o.text) for o in outputs[block]]
            moved = [
                sign * (score(o.text) - score(b.text)) > 0 and not lp
                for o, b, lp in zip(outputs[block], base_out, looping, strict=True)
            ]
            ratios = [p / b for p, b in zip(ppl[block], base_ppl, strict=True) if math.isfinite(p)]
            report = next(r for r in reports if r.name == axis.name)
            report.calibration.append(
                {
                    "sign": sign,
                    "magnitude": magnitude,
                    "new_tokens": length,
                    "prompts": k,
                    "win_rate": round(sum(moved) / k, 3),
                    "looping": sum(looping),
                    "perplexity_ratio": round(statistics.median(ratios), 3),
                    "perplexity_ratio_worst": round(max(ratios), 3),
                }
            )
    anchors: list[dict[str, Any]] = []
    poles: dict[str, dict[str, float]] = {}
    for axis in axes:
        report = next(r for r in reports if r.name == axis.name)
        magnitudes = []
        for sign, pole in ((-1, axis.low), (1, axis.high)):
            magnitude = pick_magnitude(
                [c for c in report.calibration if c["sign"] == sign],
                settings.max_perplexity_ratio,
                settings.max_worst_perplexity_ratio,
            )
            magnitudes.append(magnitude)
            poles.setdefault(axis.name, {})["low" if sign < 0 else "high"] = magnitude
            wording = pole_wordings().get(f"{axis.name}:{pole.name}", {})
            anchors.append(
                {
                    "name": f"{axis.name}:{pole.name}",
                    "description": wording.get("description", pole.description),
                    "aliases": list(wording.get("aliases", [])),
                    "weights": {n: (float(sign) if n == axis.name else 0.0) for n in names},
                }
            )
        report.anchor_magnitude = max(magnitudes)
    guard = {
        "repetition_penalty": settings.calibration_repetition_penalty,
        "plausibility": settings.calibration_plausibility,
    }
    calibration = {
        "format_version": 1,
        "unit": "pole",
        "axes": {n: poles[n] for n in names if n in poles},
        "guard": guard,
    }
    return {"format_version": 2, "axes": names, "anchors": anchors, "calibration": calibration}


def write_anchors(directory: Path, result: dict[str, Any]) -> None:
    """Write ``calibrate_anchors``' result: ``anchors.json`` and ``calibration.json``."""
    from langchain_pad.calibration import PoleCalibration, write_calibration

    anchors = {k: v for k, v in result.items() if k != "calibration"}
    (directory / "anchors.json").write_text(json.dumps(anchors, indent=2) + "\n")
    table = PoleCalibration.from_dict(result["calibration"], result["axes"])
    write_calibration(directory, PoleCalibration(table.axes, table.low, table.high, table.guard))


def pick_magnitude(
    trials: list[dict[str, Any]],
    max_perplexity_ratio: float,
    max_worst_perplexity_ratio: float | None = None,
) -> float:
    """The fluent trial with the highest win rate (the smaller weight on ties); with no
    fluent trial, the smallest weight tried. A trial without a recorded worst ratio
    (calibrations written before it was kept) is judged by its median alone."""
    if not trials:
        raise ValueError("no calibration trials to pick a weight from")
    fluent = [
        t
        for t in trials
        if t["perplexity_ratio"] <= max_perplexity_ratio
        and (
            max_worst_perplexity_ratio is None
            or t.get("perplexity_ratio_worst", 0.0) <= max_worst_perplexity_ratio
        )
    ]
    if not fluent:
        return float(min(t["magnitude"] for t in trials))
    best = max(fluent, key=lambda t: (t["win_rate"], -t["magnitude"]))
    return float(best["magnitude"])


def pole_wordings() -> dict[str, dict[str, Any]]:
    """How users phrase each pole (``data/anchor_descriptions.json``), for matching."""
    from importlib import resources

    source = resources.files("langchain_pad") / "data" / "anchor_descriptions.json"
    poles: dict[str, dict[str, Any]] = json.loads(source.read_text(encoding="utf-8"))["poles"]
    return poles
