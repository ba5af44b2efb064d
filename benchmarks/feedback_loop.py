"""Learning a user's w_p from feedback: a simulated user with a hidden preference.

The user wants, say, expert-level but concise answers, and never says so. Each round
the system shows two answers to a new prompt (decoded with PAD under two random
exploratory ``w_p``), the user picks the one the offline judges say fits the hidden
preference better, and ``store.record_feedback`` refits that user's ``w_p`` (stage 2,
warm-started) as a new profile version in a real SQLite store. After every round the
user's current profile answers a fixed set of held-out prompts (never used for
feedback); the judges measure how far the answers moved toward the hidden preference
against base greedy. Writes ``feedback_loop.{json,md}`` under ``--out``.

    python benchmarks/feedback_loop.py                          # 8 rounds
    python benchmarks/feedback_loop.py --hidden expertise:expert informativeness:thorough
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import machine_info

from langchain_pad.axes import axes_by_name
from langchain_pad.datagen.prompts import load_prompts
from langchain_pad.evaluation import DecodeRow, decode_conditions
from langchain_pad.judges import judge
from langchain_pad.models import DEFAULT_MODEL, load_model
from langchain_pad.profiles import SQLiteProfileStore, Stage2Learner
from langchain_pad.reward_model import PersonalizedRewardModel
from langchain_pad.reward_models import resolve_reward_model

ROOT = Path(__file__).resolve().parents[1]
SCALES = {"reading_grade": 3.0, "log_words": 0.5, "sentiment": 0.3, "list_share": 0.5}
"""Typical judge gaps between poles: puts the axes on one footing for the utility."""


def utility(text: str, hidden: dict[str, int]) -> float:
    total = 0.0
    for axis in axes_by_name(list(hidden)):
        total += hidden[axis.name] * judge(axis.judge)(text) / SCALES[axis.judge]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hidden", nargs="+", default=["expertise:expert", "informativeness:concise"]
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--eval-prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=56)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reward-model", default="default")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    started = time.perf_counter()
    rng = random.Random(args.seed)
    lm = load_model(DEFAULT_MODEL)
    rm_dir = resolve_reward_model(args.reward_model)
    rm = PersonalizedRewardModel.load(rm_dir, lm.model)
    anchors = {
        a["name"]: a["weights"]
        for a in json.loads((Path(rm_dir) / "anchors.json").read_text())["anchors"]
    }
    hidden: dict[str, int] = {}
    for name in args.hidden:
        axis_name, _, pole = name.partition(":")
        hidden[axis_name] = axes_by_name([axis_name])[0].sign(pole)
    magnitude = {a: max(abs(w[a]) for w in anchors.values()) for a in rm.axes}

    prompts = load_prompts()
    feedback_prompts = rng.sample([p.text for p in prompts if p.split == "train"], args.rounds)
    eval_prompts = [p.text for p in prompts if p.split == "heldout"][: args.eval_prompts]

    # Two exploratory answers per round, all rounds decoded in one batch.
    explore = [
        tuple(rng.choice((-1.0, 0.0, 1.0)) * magnitude[a] for a in rm.axes)
        for _ in range(2 * args.rounds)
    ]
    rows = [
        DecodeRow(p, weights=explore[2 * i + j])
        for i, p in enumerate(feedback_prompts)
        for j in range(2)
    ]
    candidates = decode_conditions(
        lm,
        rows,
        reward_model=rm,
        max_new_tokens=args.max_new_tokens,
        description="exploratory answers",
    )

    def evaluate(weights: dict[str, float] | None) -> list[str]:
        vector = tuple(weights.get(a, 0.0) for a in rm.axes) if weights else None
        out = decode_conditions(
            lm,
            [DecodeRow(p, weights=vector) for p in eval_prompts],
            reward_model=rm,
            max_new_tokens=args.max_new_tokens,
            description="evaluating",
            show_progress=False,
        )
        return [o.text for o in out]

    base_texts = evaluate(None)
    base_utility = [utility(t, hidden) for t in base_texts]

    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteProfileStore(
            Path(tmp) / "profiles.sqlite3",
            learner=Stage2Learner(rm, lm.tokenizer, reward_model_dir=rm_dir),
            anchors_from=None,
        )
        for i, prompt in enumerate(feedback_prompts):
            a, b = candidates[2 * i].text, candidates[2 * i + 1].text
            if a == b:
                steps.append({"round": i + 1, "skipped": "identical answers"})
                continue
            chosen, rejected = (a, b) if utility(a, hidden) >= utility(b, hidden) else (b, a)
            profile = store.record_feedback("simulated-user", prompt, chosen, rejected)
            texts = evaluate(profile.weights)
            utilities = [utility(t, hidden) for t in texts]
            per_axis = {}
            for axis in axes_by_name(list(hidden)):
                score = judge(axis.judge)
                per_axis[axis.name] = {
                    "judge": axis.judge,
                    "direction": "up" if hidden[axis.name] > 0 else "down",
                    "base_mean": statistics.fmean(score(t) for t in base_texts),
                    "mean": statistics.fmean(score(t) for t in texts),
                    "win_rate_vs_base": statistics.fmean(
                        hidden[axis.name] * (score(t) - score(b)) > 0
                        for t, b in zip(texts, base_texts, strict=True)
                    ),
                }
            steps.append(
                {
                    "round": i + 1,
                    "version": profile.version,
                    "weights": {k: round(v, 3) for k, v in profile.weights.items()},
                    "mean_utility_gain_vs_base": statistics.fmean(
                        u - b for u, b in zip(utilities, base_utility, strict=True)
                    ),
                    "utility_win_rate_vs_base": statistics.fmean(
                        u > b for u, b in zip(utilities, base_utility, strict=True)
                    ),
                    "axes": per_axis,
                    "sample": texts[0],
                }
            )
            print(
                f"round {i + 1}: v{profile.version} {steps[-1]['weights']} "
                f"utility gain {steps[-1]['mean_utility_gain_vs_base']:+.2f} "
                f"(wins {steps[-1]['utility_win_rate_vs_base']:.0%})"
            )
        history = [
            {
                "version": h.version,
                "reason": h.reason,
                "weights": {k: round(v, 3) for k, v in h.profile.weights.items()}
                if h.profile
                else None,
            }
            for h in store.history("simulated-user")
        ]
        problems = store.check_integrity()
        store.close()

    report = {
        "hidden_preference": args.hidden,
        "settings": vars(args),
        "machine": machine_info(lm),
        "base_sample": base_texts[0],
        "steps": steps,
        "history": history,
        "integrity_problems": problems,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback_loop.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Feedback loop: a simulated user with a hidden preference",
        "",
        f"Hidden preference: {', '.join(args.hidden)}. Each round: two exploratory PAD answers, "
        "the judges pick the one closer to the hidden preference, `record_feedback` refits "
        f"`w_p` (new profile version). Evaluated on {len(eval_prompts)} held-out prompts, greedy, "
        f"{args.max_new_tokens} new tokens, against base greedy. Machine: "
        f"{report['machine']['cpu_model']}, {report['machine']['date']}.",
        "",
        "| round | version | w_p | utility gain vs base | utility win rate | "
        + " | ".join(f"{a} ({(hidden[a] > 0 and 'up') or 'down'}) mean / win" for a in hidden)
        + " |",
        "|---:|---:|---|---:|---:|" + "---|" * len(hidden),
    ]
    for s in steps:
        if "skipped" in s:
            lines.append(f"| {s['round']} | - | skipped: {s['skipped']} | | |" + " |" * len(hidden))
            continue
        cells = " | ".join(
            f"{s['axes'][a]['mean']:.2f} (base {s['axes'][a]['base_mean']:.2f}) / "
            f"{s['axes'][a]['win_rate_vs_base']:.0%}"
            for a in hidden
        )
        lines.append(
            f"| {s['round']} | {s['version']} | {s['weights']} | "
            f"{s['mean_utility_gain_vs_base']:+.2f} | "
            f"{s['utility_win_rate_vs_base']:.0%} | {cells} |"
        )
    lines += [
        "",
        f"Profile history: {len(history)} versions; integrity problems: {problems or 'none'}.",
        "",
    ]
    (out / "feedback_loop.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
