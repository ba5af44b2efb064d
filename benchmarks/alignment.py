"""Does PAD move answers the way the user asked? Per pole, against two baselines.

For every shipped axis pole of a reward model (default: the shipped PersRM) and every
prompt of two prompt sets -- the held-out prompts of the project's instruction set
(never trained on) and the PAD paper's P-Soups prompts (``koala_eval_50.json``, read
from ``../shared/data`` when present) -- four systems answer greedily:

* ``base``: the plain model, no preference;
* ``prompt``: the pole's preference as a system prompt (the same instruction that made
  the training data: the strongest prompt we have, so a strong baseline);
* ``pad``: PAD at strength +-1 (the pole, through the PersRM's calibration), no
  preference in the prompt;
* ``pad+prompt``: both;
* ``pad_text``: PAD from the preference in words, never seen by the matcher: each
  prompt gets one of the pole's blind paraphrases (``--paraphrases``, written without
  seeing the anchors' wordings; round-robin), resolved as ``preference="..."`` is with no
  profile store (matched against the PersRM's anchor poles, strengths through its
  calibration). Where a paraphrase is matched to another pole, its answer still counts
  against this pole.

Scores: the axis judge (``langchain_pad.judges``) of each answer; per prompt, whether a
system moved the judge in the pole's direction against ``base`` (win rate) -- a win
counts only when the answer does not loop (a word 4-gram three or more times: a loop
adds words and a looping jargon word raises a reading grade, so the judge alone would
reward it); for a reading-grade pole, the verdict also asks the words to move
(syllables per word the pole's way), since a run-on sentence raises the grade as much
as harder words; words per sentence and syllables per word beside it; for length
poles, the wins on prompts where base greedy ended; how many answers loop, and word
distinct-2; whether ``pad+prompt`` beats ``prompt`` alone (mean judge, in the pole's
direction); fluency as the base model's perplexity of each answer after the plain user
prompt, per prompt against ``base``'s (median, mean and worst ratio). Every system
decodes with the same degeneration guard (``--repetition-penalty``, and
``--plausibility`` for PAD rows; the library's defaults). All rows of a prompt set
decode in one process and run. Every answer's text is kept in the JSON, so a new judge
needs no re-decoding. Writes ``alignment.json``, ``alignment.md`` and ``alignment.png``
under ``--out``.

    python benchmarks/alignment.py                  # both prompt sets, all prompts
    python benchmarks/alignment.py --limit 8        # a quick look
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

from alignment_report import SYSTEMS, markdown, plot, verdict
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
from langchain_pad.guard import DEFAULT_PLAUSIBILITY, DEFAULT_REPETITION_PENALTY
from langchain_pad.judges import judge, syllables_per_word, words_per_sentence
from langchain_pad.models import DEFAULT_MODEL, load_model, resolve_reward_model
from langchain_pad.profiles.anchors import load_anchors
from langchain_pad.reward_model import PersonalizedRewardModel

ROOT = Path(__file__).resolve().parents[1]
KOALA = ROOT.parent / "shared" / "data" / "koala_eval_50.json"
PARAPHRASES = ROOT / "tests" / "data" / "preference_paraphrases_blind.json"


def text_weights(args: argparse.Namespace, rm_path: str, axes: list[str]) -> dict[str, Any]:
    """Per pole: its blind paraphrases, each with the strengths and raw ``w_p`` it resolves
    to, the way ``PADChatModel(preference=...)`` resolves it without a profile store."""
    from langchain_pad.preferences import PreferenceQuery, PreferenceResolver
    from langchain_pad.profiles import InMemoryProfileStore, reward_model_ref

    store = InMemoryProfileStore(reward_model=rm_path)
    resolver = PreferenceResolver()
    ref = reward_model_ref(rm_path)
    by_pole: dict[str, list[dict[str, Any]]] = {}
    for row in json.loads(Path(args.paraphrases).read_text())["paraphrases"]:
        resolved = resolver.resolve(
            PreferenceQuery(preference=row["text"]),
            axes=axes,
            reward_model_id=ref.id,
            anchors=lambda: store,
            calibration=args.calibration,
        )
        by_pole.setdefault(row["anchor"], []).append(
            {
                "text": row["text"],
                "strengths": list(resolved.strengths or ()),
                "weights": resolved.weights,
            }
        )
    return by_pole


def prompt_sets(args: argparse.Namespace) -> dict[str, list[str]]:
    sets = {"heldout": [p.text for p in load_prompts() if p.split == "heldout"]}
    koala = Path(args.koala)
    if koala.is_file():
        sets["psoups_koala"] = [row["prompt"] for row in json.loads(koala.read_text())]
    else:
        print(f"note: {koala} not found; the P-Soups prompt set is skipped")
    if args.limit:
        sets = {name: prompts[: args.limit] for name, prompts in sets.items()}
    return sets


def run_set(
    name: str, prompts: list[str], args: argparse.Namespace, lm: Any, rm: Any, anchors: Any
) -> dict[str, Any]:
    """Every pole of every axis on ``prompts``; each axis read at its judge's length."""
    groups: dict[int, list[Any]] = {}
    for axis in axes_by_name(rm.axes):
        groups.setdefault(args.max_new_tokens or axis.eval_new_tokens, []).append(axis)
    poles: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    decode_seconds = 0.0
    rows_total = 0
    for length, group in sorted(groups.items()):
        subset = prompts
        if args.long_limit and length > args.long_threshold:
            subset = prompts[: args.long_limit]
        started = time.perf_counter()
        result = run_group(name, subset, length, group, args, lm, rm, anchors)
        decode_seconds += time.perf_counter() - started
        rows_total += result["rows"]
        poles += result["poles"]
        samples += result["samples"]
    return {
        "prompts": len(prompts),
        "rows": rows_total,
        "decode_seconds": round(decode_seconds, 1),
        "poles": poles,
        "samples": samples,
    }


def run_group(
    name: str,
    prompts: list[str],
    length: int,
    axes: list[Any],
    args: argparse.Namespace,
    lm: Any,
    rm: Any,
    anchors: Any,
) -> dict[str, Any]:
    rows = [DecodeRow(p) for p in prompts]
    plan: list[tuple[str, str, str]] = []  # (axis, pole, system)
    for axis in axes:
        for pole in (axis.low, axis.high):
            strengths = [args.strength * anchors[f"{axis.name}:{pole.name}"][a] for a in rm.axes]
            weights = args.calibration.to_raw(strengths)
            texts = args.text_weights.get(f"{axis.name}:{pole.name}", [])
            for system in SYSTEMS:
                if system == "pad_text" and not texts:
                    continue
                plan.append((axis.name, pole.name, system))
                rows.extend(
                    DecodeRow(
                        p,
                        system=pole.system_prompt if "prompt" in system else None,
                        weights=(
                            texts[i % len(texts)]["weights"]
                            if system == "pad_text"
                            else weights
                            if system.startswith("pad")
                            else None
                        ),
                    )
                    for i, p in enumerate(prompts)
                )
    # a paraphrase resolved to the pole's own strengths repeats a pad row: greedy
    # decoding is deterministic, so each distinct row decodes once
    distinct = list(dict.fromkeys(rows))
    decoded = decode_conditions(
        lm,
        distinct,
        reward_model=rm,
        max_new_tokens=length,
        batch_size=args.batch_size,
        repetition_penalty=args.repetition_penalty,
        plausibility=args.plausibility,
        description=f"{name}: decoding ({length} tokens)",
    )
    distinct_ppl = perplexities(lm, [r.prompt for r in distinct], [o.token_ids for o in decoded])
    where = {row: i for i, row in enumerate(distinct)}
    outputs = [decoded[where[row]] for row in rows]
    ppl = [distinct_ppl[where[row]] for row in rows]
    k = len(prompts)
    base, base_ppl = outputs[:k], ppl[:k]
    poles: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for axis in axes:
        score = judge(axis.judge)
        base_scores = [score(o.text) for o in base]
        base_loops = [loops(o.text) for o in base]
        base_words = [syllables_per_word(o.text) for o in base]
        base_ends = [o.finish_reason == "stop" for o in base]
        for pole in (axis.low, axis.high):
            sign = axis.sign(pole.name)
            entry: dict[str, Any] = {
                "axis": axis.name,
                "pole": pole.name,
                "judge": axis.judge,
                "direction": "up" if sign > 0 else "down",
                "prompts": k,
                "new_tokens": length,
                "base_finished": sum(o.finish_reason == "stop" for o in base) / k,
                "base_mean": statistics.fmean(base_scores),
                "base_looping": sum(base_loops),
                "base_distinct_2": statistics.fmean(distinct_words(o.text) for o in base),
                "base_ppl_median": statistics.median(base_ppl),
                "base_words_per_sentence": statistics.fmean(
                    words_per_sentence(o.text) for o in base
                ),
                "base_syllables_per_word": statistics.fmean(base_words),
                "base_texts": [o.text for o in base],
                "systems": {},
            }
            for system in SYSTEMS:
                if (axis.name, pole.name, system) not in plan:
                    continue
                i = plan.index((axis.name, pole.name, system))
                block = slice(k * (i + 1), k * (i + 2))
                outs = outputs[block]
                scores = [score(o.text) for o in outs]
                looping = [loops(o.text) for o in outs]
                moved = [sign * (s - b) > 0 for s, b in zip(scores, base_scores, strict=True)]
                wins = [m and not lp for m, lp in zip(moved, looping, strict=True)]
                # a reading grade also rises with sentence length: a win there counts
                # only when the words moved too, so a run-on cannot pass for expert prose
                out_words = [syllables_per_word(o.text) for o in outs]
                word_moved = [
                    sign * (w - b) > 0 for w, b in zip(out_words, base_words, strict=True)
                ]
                word_wins = [w and m for w, m in zip(wins, word_moved, strict=True)]
                ended_wins = [w for w, e in zip(wins, base_ends, strict=True) if e]
                finite = [p for p in ppl[block] if math.isfinite(p)]
                ratios = [
                    p / b for p, b in zip(ppl[block], base_ppl, strict=True) if math.isfinite(p / b)
                ]
                entry["systems"][system] = {
                    "mean": statistics.fmean(scores),
                    "win_rate_vs_base": sum(wins) / k,
                    "moved_rate_vs_base": sum(moved) / k,
                    "looping": sum(looping),
                    "loop_flags": looping,
                    "finished": sum(o.finish_reason == "stop" for o in outs) / k,
                    "ppl_median": statistics.median(finite),
                    "ppl_ratio_vs_base": statistics.median(ratios),
                    "ppl_ratio_mean": statistics.fmean(ratios),
                    "ppl_ratio_worst": max(ratios),
                    "distinct_2": statistics.fmean(distinct_words(o.text) for o in outs),
                    "words_per_sentence": statistics.fmean(
                        words_per_sentence(o.text) for o in outs
                    ),
                    "syllables_per_word": statistics.fmean(out_words),
                    "word_win_rate_vs_base": sum(word_wins) / k,
                    "wins_where_base_ends": [sum(ended_wins), len(ended_wins)],
                    "scores": scores,
                    "texts": [o.text for o in outs],
                }
                if system == "pad_text":
                    texts = args.text_weights[f"{axis.name}:{pole.name}"]
                    used = [texts[i % len(texts)] for i in range(k)]
                    own = [args.strength * anchors[f"{axis.name}:{pole.name}"][a] for a in rm.axes]
                    entry["systems"][system]["paraphrases"] = len({t["text"] for t in used})
                    entry["systems"][system]["resolved_to_pole"] = sum(
                        t["strengths"] == own for t in used
                    )
                if system == "pad":
                    samples.append(
                        {
                            "axis": axis.name,
                            "pole": pole.name,
                            "prompt": prompts[0],
                            "base": base[0].text,
                            "pad": outs[0].text,
                        }
                    )
            prompt_scores = entry["systems"]["prompt"]["scores"]
            both_scores = entry["systems"]["pad+prompt"]["scores"]
            entry["pad_plus_prompt_beats_prompt"] = (
                sign * (statistics.fmean(both_scores) - statistics.fmean(prompt_scores)) > 0
            )
            entry["pad_plus_prompt_win_rate_vs_prompt"] = (
                sum(sign * (b - p) > 0 for b, p in zip(both_scores, prompt_scores, strict=True)) / k
            )
            poles.append(entry)
    return {"rows": len(distinct), "poles": poles, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reward-model", default="default")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--koala", default=str(KOALA), help="P-Soups prompts (koala_eval_50)")
    parser.add_argument("--limit", type=int, default=None, help="first N prompts of each set")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="one answer length for every axis (default: each axis's judge length)",
    )
    parser.add_argument(
        "--long-limit",
        type=int,
        default=None,
        help="first N prompts of each set for axes read at more than --long-threshold tokens",
    )
    parser.add_argument("--long-threshold", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--strength", type=float, default=1.0, help="PAD strength at each pole")
    parser.add_argument("--repetition-penalty", type=float, default=DEFAULT_REPETITION_PENALTY)
    parser.add_argument("--plausibility", type=float, default=DEFAULT_PLAUSIBILITY)
    parser.add_argument(
        "--paraphrases",
        default=str(PARAPHRASES),
        help="unseen preference wordings per pole, for the pad_text system",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    torch.manual_seed(0)
    lm = load_model(args.model)
    rm_path = resolve_reward_model(args.reward_model)
    rm = PersonalizedRewardModel.load(rm_path, lm.model)
    anchor_set = load_anchors(rm_path)
    anchors = {a.name: anchor_set.strengths(a) for a in anchor_set.anchors}
    args.calibration = load_calibration(rm_path, rm.axes)
    args.text_weights = text_weights(args, rm_path, list(rm.axes))
    report: dict[str, Any] = {
        "reward_model": args.reward_model,
        "axes": rm.axes,
        "anchors": anchors,
        "settings": {
            "max_new_tokens": args.max_new_tokens or "each axis's judge length",
            "batch_size": args.batch_size,
            "strength": args.strength,
            "repetition_penalty": args.repetition_penalty,
            "plausibility": args.plausibility,
            "calibration": args.calibration.to_dict(),
            "paraphrases": str(Path(args.paraphrases).relative_to(ROOT))
            if Path(args.paraphrases).is_relative_to(ROOT)
            else args.paraphrases,
            "text_resolutions": args.text_weights,
            "limit": args.limit,
            "long_limit": args.long_limit,
            "long_threshold": args.long_threshold,
            "decoding": "greedy, K=10 candidates",
        },
        "machine": machine_info(lm),
        "sets": {},
    }
    started = time.perf_counter()
    for name, prompts in prompt_sets(args).items():
        report["sets"][name] = run_set(name, prompts, args, lm, rm, anchors)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    report["verdict"] = verdict(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "alignment.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "alignment.md").write_text(markdown(report))
    plot(report, out / "alignment.png")
    print(markdown(report))


if __name__ == "__main__":
    main()
