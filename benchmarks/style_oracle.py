"""Can the base model be steered warm at all? The style judges themselves as the reward.

Issue 13 asks for the style axis (warm <-> blunt) and, if the 135M base cannot be steered
on it "whatever the data", for the measurements that prove it. A trained PersRM can only
re-rank what the base model offers: its top-K candidates at each step, under the same
plausibility floor and repetition penalty. So the best any reward model could do is
bounded by a reward that *is* the judge: at each step, every candidate's reward is how
much appending it moves the judge (VADER compound, or the empath warmth share) in the
pole's direction, times a strength. This "oracle" guide needs no training and no data.

* If the oracle cannot move the judges the intended way on 75% of held-out prompts with
  fluent answers (no loop, perplexity ratio within 2), no PersRM trained on any data
  can: the base model is what blocks the axis.
* If it can, the base model offers warm (or blunt) tokens and the PersRM is what falls
  short: better data or training is the way on.

The oracle reads the judge one token ahead only (greedy in the reward), so it is a lower
bound on the best re-ranking, which is enough for the second verdict, and a fair
stand-in for a token-level reward for the first. The guide is
:class:`langchain_pad.datagen.judge_guide.JudgeGuide`, which data generation also uses.

    python benchmarks/style_oracle.py --limit 12 --strengths 2 5 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import machine_info

from langchain_pad.datagen.judge_guide import JudgeGuide, JudgeTarget
from langchain_pad.datagen.prompts import load_prompts
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.evaluation import distinct_words, loops, perplexities, user_prompt_ids
from langchain_pad.judges import judge
from langchain_pad.models import DEFAULT_MODEL, LoadedModel, load_model

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
JUDGES = ("sentiment", "warmth")


def decode(
    lm: LoadedModel,
    prompts: list[str],
    targets: list[JudgeTarget | None],
    new_tokens: int,
    penalty: float,
) -> list[Any]:
    engine = DecodingEngine(
        lm.model, lm.tokenizer, eos_token_ids=lm.eos_token_ids, context_length=lm.context_length
    )
    params = SamplingParams(max_new_tokens=new_tokens, repetition_penalty=penalty)
    guide = JudgeGuide(lm.tokenizer)
    outputs: list[Any] = []
    for prompt, target in zip(prompts, targets, strict=True):
        request = GenerationRequest(tuple(user_prompt_ids(lm, prompt)), params, target)
        outputs.extend(engine.generate([request], guide=guide))
    return outputs


def pole_row(
    lm: LoadedModel,
    prompts: list[str],
    base: list[Any],
    outs: list[Any],
    sign: int,
) -> dict[str, Any]:
    ppl = perplexities(lm, prompts, [o.token_ids for o in outs])
    base_ppl = perplexities(lm, prompts, [o.token_ids for o in base])
    ratio = [p / b for p, b in zip(ppl, base_ppl, strict=True)]
    looping = [loops(o.text) for o in outs]
    row: dict[str, Any] = {"prompts": len(prompts), "looping": sum(looping)}
    moved_all = [True] * len(prompts)
    for name in JUDGES:
        score = judge(name)
        moved = [
            sign * (score(o.text) - score(b.text)) > 0 for o, b in zip(outs, base, strict=True)
        ]
        moved_all = [a and m for a, m in zip(moved_all, moved, strict=True)]
        row[f"{name}_wins_without_loop"] = sum(
            m and not lp for m, lp in zip(moved, looping, strict=True)
        )
        row[f"{name}_mean"] = round(statistics.fmean(score(o.text) for o in outs), 4)
    row["both_wins_without_loop"] = sum(
        m and not lp for m, lp in zip(moved_all, looping, strict=True)
    )
    row["ppl_ratio"] = {
        "median": round(statistics.median(ratio), 3),
        "mean": round(statistics.fmean(ratio), 3),
        "worst": round(max(ratio), 3),
    }
    row["distinct_2"] = round(statistics.fmean(distinct_words(o.text) for o in outs), 3)
    row["example"] = outs[0].text
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    prompts = [p.text for p in load_prompts() if p.split == "heldout"][: args.limit]
    started = time.perf_counter()
    base = decode(lm, prompts, [None] * len(prompts), args.new_tokens, args.penalty)
    base_means = {j: round(statistics.fmean(judge(j)(o.text) for o in base), 4) for j in JUDGES}
    results: list[dict[str, Any]] = []
    for oracle_judge in args.judges:
        for strength in args.strengths:
            for pole, sign in (("warm", 1), ("blunt", -1)):
                target = JudgeTarget(oracle_judge, sign, strength, args.floor)
                outs = decode(lm, prompts, [target] * len(prompts), args.new_tokens, args.penalty)
                row = pole_row(lm, prompts, base, outs, sign)
                results.append({"oracle": oracle_judge, "strength": strength, "pole": pole, **row})
                print(
                    f"{oracle_judge} x{strength} {pole}: vader {row['sentiment_wins_without_loop']}"
                    f"/{len(prompts)} warmth {row['warmth_wins_without_loop']}/{len(prompts)} "
                    f"ppl {row['ppl_ratio']} loops {row['looping']}",
                    file=sys.stderr,
                    flush=True,
                )
    return {
        "machine": machine_info(lm),
        "settings": {
            "prompts": len(prompts),
            "new_tokens": args.new_tokens,
            "candidates": JudgeGuide.default_candidates,
            "repetition_penalty": args.penalty,
            "plausibility_floor": args.floor,
            "greedy": True,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "base": {
            "judge_means": base_means,
            "looping": sum(loops(o.text) for o in base),
            "example": base[0].text,
        },
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    n = s["prompts"]
    lines = [
        "# Style oracle: the judges themselves as the token reward",
        "",
        f"{n} held-out prompts, greedy, {s['new_tokens']} new tokens, top-{s['candidates']} "
        f"candidates, repetition penalty {s['repetition_penalty']}, plausibility floor "
        f"{s['plausibility_floor']} (the shipped guard). Each candidate's reward: strength x "
        "(judge of the answer with the candidate appended - judge of the answer so far), "
        "signed by the pole. Wins: the judge moved the pole's way against base greedy, "
        f"answer not looping. {report['seconds']} s in all.",
        "",
        f"Base greedy: VADER mean {report['base']['judge_means']['sentiment']}, warmth mean "
        f"{report['base']['judge_means']['warmth']}, looping {report['base']['looping']}/{n}.",
        "",
        "| oracle judge | strength | pole | VADER wins | warmth wins | both | loops | "
        "ppl x median / mean / worst | distinct-2 |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        p = r["ppl_ratio"]
        lines.append(
            f"| {r['oracle']} | {r['strength']} | {r['pole']} | "
            f"{r['sentiment_wins_without_loop']}/{n} | {r['warmth_wins_without_loop']}/{n} | "
            f"{r['both_wins_without_loop']}/{n} | {r['looping']} | "
            f"{p['median']} / {p['mean']} / {p['worst']} | {r['distinct_2']} |"
        )
    lines += ["", "## First prompt's answers", "", f"- base: {report['base']['example']!r}"]
    lines += [
        f"- {r['oracle']} x{r['strength']} {r['pole']}: {r['example']!r}" for r in report["results"]
    ]
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in report["machine"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, default=12, help="first N held-out prompts")
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--strengths", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    parser.add_argument("--judges", nargs="+", default=list(JUDGES), choices=JUDGES)
    parser.add_argument("--penalty", type=float, default=1.15)
    parser.add_argument("--floor", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "style_oracle.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "style_oracle.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
