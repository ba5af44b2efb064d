"""Learning a user's w_p from feedback: a simulated user with a hidden preference.

The user wants, say, expert-level but concise answers, and never says so. Each round
asks about one axis: the system shows two answers to a new prompt, decoded with PAD
under the user's current ``w_p`` with that axis pushed to each pole
(``contrast_weights``); the user picks the one the offline judges say fits the hidden
preference better, and ``store.record_feedback`` refits that user's ``w_p`` (stage 2,
warm-started, mapped onto the anchors' calibrated scale) as a new profile version in a
real SQLite store. Every ``--eval-every`` rounds the current profile answers a fixed
set of held-out prompts (never used for feedback), each axis at its judge's length;
the judges measure how far the answers moved toward the hidden preference against
base greedy. Writes ``feedback_loop.{json,md}`` under ``--out``.

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
from langchain_pad.models import DEFAULT_MODEL, load_model, resolve_reward_model
from langchain_pad.profiles import SQLiteProfileStore, Stage2Learner, contrast_weights
from langchain_pad.reward_model import PersonalizedRewardModel

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
    parser.add_argument("--eval-prompts", type=int, default=12)
    parser.add_argument(
        "--eval-every", type=int, default=2, help="evaluate the profile every N rounds"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="one answer length for everything (default: each axis's judge length)",
    )
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
    length = {
        axis.name: args.max_new_tokens or axis.eval_new_tokens for axis in axes_by_name(rm.axes)
    }

    prompts = load_prompts()
    feedback_prompts = rng.sample([p.text for p in prompts if p.split == "train"], args.rounds)
    eval_prompts = [p.text for p in prompts if p.split == "heldout"][: args.eval_prompts]

    def answers(rows: list[DecodeRow], tokens: int, description: str) -> list[str]:
        out = decode_conditions(
            lm,
            rows,
            reward_model=rm,
            max_new_tokens=tokens,
            description=description,
            show_progress=False,
        )
        return [o.text for o in out]

    def evaluate(weights: dict[str, float] | None) -> dict[str, list[str]]:
        """Answers to the evaluation prompts, at each hidden axis's judge length."""
        vector = tuple(weights.get(a, 0.0) for a in rm.axes) if weights else None
        return {
            axis: answers(
                [DecodeRow(p, weights=vector) for p in eval_prompts], length[axis], "evaluating"
            )
            for axis in hidden
        }

    def measure(texts: dict[str, list[str]], base: dict[str, list[str]]) -> dict[str, Any]:
        per_axis = {}
        for axis in axes_by_name(list(hidden)):
            score = judge(axis.judge)
            ours, theirs = texts[axis.name], base[axis.name]
            per_axis[axis.name] = {
                "judge": axis.judge,
                "new_tokens": length[axis.name],
                "direction": "up" if hidden[axis.name] > 0 else "down",
                "base_mean": statistics.fmean(score(t) for t in theirs),
                "mean": statistics.fmean(score(t) for t in ours),
                "win_rate_vs_base": statistics.fmean(
                    hidden[axis.name] * (score(t) - score(b)) > 0
                    for t, b in zip(ours, theirs, strict=True)
                ),
            }
        return per_axis

    base_texts = evaluate(None)
    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteProfileStore(
            Path(tmp) / "profiles.sqlite3",
            learner=Stage2Learner(rm, lm.tokenizer, reward_model_dir=rm_dir),
            anchors_from=None,
        )
        current = dict.fromkeys(rm.axes, 0.0)
        explored = list(rm.axes)
        for i, prompt in enumerate(feedback_prompts):
            # one axis per question: the current w_p with that axis pushed to each pole
            axis = explored[i % len(explored)]
            low, high = contrast_weights(current, axis, magnitude[axis])
            a, b = answers(
                [DecodeRow(prompt, weights=tuple(w[x] for x in rm.axes)) for w in (low, high)],
                length[axis],
                "exploring",
            )
            step: dict[str, Any] = {"round": i + 1, "explored_axis": axis}
            if a == b:
                steps.append({**step, "skipped": "identical answers"})
                continue
            chosen, rejected = (a, b) if utility(a, hidden) >= utility(b, hidden) else (b, a)
            profile = store.record_feedback("simulated-user", prompt, chosen, rejected)
            current = dict(profile.weights)
            step.update(
                version=profile.version,
                weights={k: round(v, 3) for k, v in profile.weights.items()},
                chose="high" if chosen == b else "low",
            )
            if (i + 1) % args.eval_every == 0 or i + 1 == args.rounds:
                step["axes"] = measure(evaluate(profile.weights), base_texts)
            steps.append(step)
            print(
                f"round {i + 1} ({axis}, chose {step['chose']}): v{profile.version} "
                f"{step['weights']}" + (f" {step['axes']}" if "axes" in step else "")
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
        "base_sample": {axis: texts[0] for axis, texts in base_texts.items()},
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
        f"Hidden preference: {', '.join(args.hidden)}. Each round asks about one axis: two "
        "PAD answers to a new training prompt, the current `w_p` with that axis pushed to "
        "each pole (`contrast_weights`, at the anchors' largest weight); the judges pick "
        "the one closer to the hidden preference; `record_feedback` refits `w_p` (stage 2, "
        "mapped onto the anchors' scale) as a new profile version. Every "
        f"{args.eval_every} rounds the profile answers {len(eval_prompts)} held-out prompts "
        "(greedy, each axis at its judge length: "
        + ", ".join(f"{a} {length[a]} tokens" for a in hidden)
        + f"), judged against base greedy. Machine: {report['machine']['cpu_model']}, "
        f"{report['machine']['date']}; {report['wall_seconds']:.0f} s.",
        "",
        "| round | asked about | chose | version | w_p | "
        + " | ".join(
            f"{a} ({(hidden[a] > 0 and 'up') or 'down'}) mean / win vs base" for a in hidden
        )
        + " |",
        "|---:|---|---|---:|---|" + "---|" * len(hidden),
    ]
    for s in steps:
        if "skipped" in s:
            lines.append(
                f"| {s['round']} | {s['explored_axis']} | - | - | skipped: {s['skipped']} |"
                + " |" * len(hidden)
            )
            continue
        cells = " | ".join(
            (
                f"{s['axes'][a]['mean']:.2f} (base {s['axes'][a]['base_mean']:.2f}) / "
                f"{s['axes'][a]['win_rate_vs_base']:.0%}"
            )
            if "axes" in s
            else ""
            for a in hidden
        )
        lines.append(
            f"| {s['round']} | {s['explored_axis']} | {s['chose']} | {s['version']} | "
            f"{s['weights']} | {cells} |"
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
