"""Which degeneration guard to ship on by default: measured, not guessed.

For each guard setting -- a repetition penalty applied to every row (plain and PAD, so
the base a PAD answer is compared with has the same guard) and a plausibility floor for
PAD rows -- the held-out prompts are answered greedily by plain decoding and by PAD at
each pole's shipped anchor weight. Per pole: wins against the base (the judge moved in
the pole's direction) counted only for answers that do not loop, PAD and base answers
that loop (a word 4-gram three or more times), word distinct-2, and the base model's
perplexity ratio of PAD's answers to the base's (median, mean, worst). Each axis is read
at its judge's length (256 new tokens for the length axis, so answers can finish).

    python benchmarks/guard_sweep.py                      # the default sweep
    python benchmarks/guard_sweep.py --guards 1.0:0 1.15:0.1 --limit 6
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import machine_info

from langchain_pad.axes import axes_by_name
from langchain_pad.calibration import load_calibration
from langchain_pad.datagen.prompts import load_prompts
from langchain_pad.evaluation import (
    DecodeRow,
    decode_conditions,
    distinct_words,
    loops,
    perplexities,
)
from langchain_pad.judges import judge
from langchain_pad.models import DEFAULT_MODEL, load_model, resolve_reward_model
from langchain_pad.profiles.anchors import load_anchors
from langchain_pad.reward_model import PersonalizedRewardModel

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GUARDS = ("1.0:0", "1.15:0", "1.0:0.1", "1.15:0.1")


def parse_guard(text: str) -> tuple[float, float]:
    penalty, _, floor = text.partition(":")
    return float(penalty), float(floor or 0)


def ratios(pad: list[float], base: list[float]) -> dict[str, float]:
    pairs = [p / b for p, b in zip(pad, base, strict=True) if math.isfinite(p / b)]
    return {
        "median": round(statistics.median(pairs), 3),
        "mean": round(statistics.fmean(pairs), 3),
        "worst": round(max(pairs), 3),
    }


def sweep_guard(
    penalty: float,
    floor: float,
    prompts: list[str],
    lm: Any,
    rm: Any,
    anchors: dict[str, dict[str, float]],
    scale: float,
    calibration: Any,
) -> list[dict[str, Any]]:
    poles: list[dict[str, Any]] = []
    for axis in axes_by_name(rm.axes):
        rows = [DecodeRow(p) for p in prompts]
        pole_order = (axis.low, axis.high)
        for pole in pole_order:
            strengths = [scale * anchors[f"{axis.name}:{pole.name}"][a] for a in rm.axes]
            weights = calibration.to_raw(strengths)
            rows += [DecodeRow(p, weights=weights) for p in prompts]
        outputs = decode_conditions(
            lm,
            rows,
            reward_model=rm,
            max_new_tokens=axis.eval_new_tokens,
            repetition_penalty=penalty,
            plausibility=floor,
            description=f"penalty {penalty} floor {floor}: {axis.name}",
        )
        ppl = perplexities(lm, [r.prompt for r in rows], [o.token_ids for o in outputs])
        k = len(prompts)
        score = judge(axis.judge)
        base = outputs[:k]
        base_scores = [score(o.text) for o in base]
        base_loops = [loops(o.text) for o in base]
        for i, pole in enumerate(pole_order):
            sign = axis.sign(pole.name)
            block = slice(k * (i + 1), k * (i + 2))
            outs = outputs[block]
            looping = [loops(o.text) for o in outs]
            moved = [sign * (score(o.text) - b) > 0 for o, b in zip(outs, base_scores, strict=True)]
            second: dict[str, Any] = {}
            if axis.second_judge is not None:
                # an axis with a second judge (style: warmth) is read by both, separately
                score2 = judge(axis.second_judge)
                moved2 = [
                    sign * (score2(o.text) - score2(b.text)) > 0
                    for o, b in zip(outs, base, strict=True)
                ]
                second = {
                    "second_judge": axis.second_judge,
                    "second_wins_without_loop": sum(
                        m and not lp for m, lp in zip(moved2, looping, strict=True)
                    ),
                    "both_judges_wins_without_loop": sum(
                        m and m2 and not lp
                        for m, m2, lp in zip(moved, moved2, looping, strict=True)
                    ),
                }
            poles.append(
                {
                    **second,
                    "axis": axis.name,
                    "pole": pole.name,
                    "new_tokens": axis.eval_new_tokens,
                    "prompts": k,
                    "wins": sum(moved),
                    "wins_without_loop": sum(
                        m and not lp for m, lp in zip(moved, looping, strict=True)
                    ),
                    "pad_looping": sum(looping),
                    "base_looping": sum(base_loops),
                    "pad_distinct_2": round(
                        statistics.fmean(distinct_words(o.text) for o in outs), 3
                    ),
                    "base_distinct_2": round(
                        statistics.fmean(distinct_words(o.text) for o in base), 3
                    ),
                    "ppl_ratio": ratios(ppl[block], ppl[:k]),
                    "example": {"prompt": prompts[0], "base": base[0].text, "pad": outs[0].text},
                }
            )
    return poles


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# Degeneration guard sweep",
        "",
        f"Reward model `{report['reward_model']}`, strength {report['scale']} at each pole "
        "(its calibrated raw weight times that); greedy, "
        f"K=10; {report['prompts']} held-out prompts; {machine['cpu_model']} "
        f"({machine['torch_threads']} threads), {machine['date']}; "
        f"{report['wall_seconds']} s.",
        "",
        "Wins count only answers that do not loop (a word 4-gram 3+ times). The base is "
        "plain greedy decoding with the same repetition penalty.",
        "",
        "| penalty | floor | pole | tokens | wins (no loop) / n | PAD loops | base loops "
        "| distinct-2 PAD / base | ppl ratio median / mean / worst |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for guard in report["guards"]:
        for p in guard["poles"]:
            r = p["ppl_ratio"]
            lines.append(
                f"| {guard['repetition_penalty']} | {guard['plausibility']} | "
                f"{p['axis']}:{p['pole']} | {p['new_tokens']} | "
                f"{p['wins_without_loop']} ({p['wins']}) / {p['prompts']} | "
                f"{p['pad_looping']} | {p['base_looping']} | "
                f"{p['pad_distinct_2']} / {p['base_distinct_2']} | "
                f"{r['median']} / {r['mean']} / {r['worst']} |"
            )
    for guard in report["guards"]:
        for p in guard["poles"]:
            if "second_judge" in p:
                lines.append(
                    f"- {guard['repetition_penalty']}:{guard['plausibility']} "
                    f"{p['axis']}:{p['pole']}: {p['second_judge']} moved the intended way "
                    f"without a loop on {p['second_wins_without_loop']} / {p['prompts']}; "
                    f"both judges on {p['both_judges_wins_without_loop']} / {p['prompts']}"
                )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reward-model", default="default")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument(
        "--guards",
        nargs="+",
        default=list(DEFAULT_GUARDS),
        help="PENALTY:FLOOR settings (repetition penalty, plausibility floor)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="strength of each pole (1: the calibrated pole)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N held-out prompts")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="guard_sweep")
    args = parser.parse_args()

    torch.manual_seed(0)
    lm = load_model(args.model)
    rm_path = resolve_reward_model(args.reward_model)
    rm = PersonalizedRewardModel.load(rm_path, lm.model)
    anchor_set = load_anchors(rm_path)
    anchors = {a.name: anchor_set.strengths(a) for a in anchor_set.anchors}
    calibration = load_calibration(rm_path, rm.axes)
    prompts = [p.text for p in load_prompts() if p.split == "heldout"][: args.limit]
    started = time.perf_counter()
    guards = []
    for text in args.guards:
        penalty, floor = parse_guard(text)
        poles = sweep_guard(penalty, floor, prompts, lm, rm, anchors, args.scale, calibration)
        guards.append({"repetition_penalty": penalty, "plausibility": floor, "poles": poles})
    report = {
        "reward_model": args.reward_model,
        "scale": args.scale,
        "prompts": len(prompts),
        "machine": machine_info(lm),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "guards": guards,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
