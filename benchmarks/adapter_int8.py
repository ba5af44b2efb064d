"""Should the PersRM's adapter run in int8 on a float32 trunk? Speed and steering, one run.

A guided float32 token costs the trunk (538 MB of weights) plus the adapter's four
layers (56 MB): PAD / plain cannot beat about 0.905x while the adapter stays float32.
Weight-only int8 (``langchain_pad.quantization``, the ``dtype="int8"`` layers) cuts the
adapter to 14 MB. Whether that may become the default depends on two measurements,
both here and both on the same machine in one process:

* **speed** through the public API: ``PADChatModel.invoke`` with and without
  ``weights=``, batch 1, every row exactly ``--new-tokens`` long (EOS is an ordinary
  token), systems interleaved over ``--repeats`` after a warm-up; two runtimes share one
  loaded float32 model and differ only in their reward model's adapter;
* **steering** on the held-out prompts, as ``benchmarks/alignment.py`` reads it: each
  pole at strength +-1 against base greedy under the default guard, a win only for an
  answer that does not loop, the base model's perplexity ratio (median / mean / worst),
  mean words per sentence (the reading-grade judge rises with sentence length, so a
  pole that wins by run-on sentences shows here), and how many answers equal the
  float32 adapter's.

    python benchmarks/adapter_int8.py               # about 35 min on 2 cores
    python benchmarks/adapter_int8.py --limit 4 --long-limit 2 --new-tokens 16 --repeats 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import PROMPTS, machine_info

from langchain_pad import PADChatModel, PADRuntime
from langchain_pad.axes import axes_by_name
from langchain_pad.calibration import load_calibration
from langchain_pad.datagen.prompts import load_prompts
from langchain_pad.evaluation import DecodeRow, decode_conditions, loops, perplexities
from langchain_pad.guard import DEFAULT_PLAUSIBILITY, DEFAULT_REPETITION_PENALTY
from langchain_pad.judges import judge, words_per_sentence
from langchain_pad.models import LoadedModel, load_model, resolve_reward_model
from langchain_pad.quantization import quantize_linears_int8
from langchain_pad.reward_model import PersonalizedRewardModel

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
ADAPTERS = ("float32", "int8")


def adapter_runtime(loaded: LoadedModel, adapter: str) -> PADRuntime:
    """A runtime over ``loaded`` whose default PersRM has the adapter in ``adapter``."""
    runtime = PADRuntime.from_loaded(loaded)
    if adapter == "int8":
        quantize_linears_int8(runtime.reward_model().adapter)
    return runtime


def speed(loaded: LoadedModel, args: argparse.Namespace) -> dict[str, Any]:
    no_eos = dataclasses.replace(loaded, eos_token_ids=frozenset())  # exactly N tokens
    prompts = list(PROMPTS[: args.prompts])
    weights = {"expertise": 1.0}
    models = {
        a: PADChatModel(runtime=adapter_runtime(no_eos, a), max_tokens=args.new_tokens)
        for a in ADAPTERS
    }

    def count(llm: PADChatModel, **kwargs: Any) -> int:
        total = 0
        for prompt in prompts:
            usage = llm.invoke(prompt, **kwargs).usage_metadata
            if usage is None:
                raise RuntimeError("PADChatModel returned no usage metadata")
            total += usage["output_tokens"]
        return total

    systems: dict[str, Callable[[], int]] = {
        "plain": lambda: count(models["float32"]),
        "pad, float32 adapter": lambda: count(models["float32"], weights=weights),
        "pad, int8 adapter": lambda: count(models["int8"], weights=weights),
    }
    for name, call in systems.items():
        print(f"warm-up {name}", flush=True)
        call()
    rates: dict[str, list[float]] = {name: [] for name in systems}
    for repeat in range(args.repeats):
        for name in list(systems) if repeat % 2 == 0 else list(systems)[::-1]:
            began = time.perf_counter()
            tokens = systems[name]()
            rates[name].append(round(tokens / (time.perf_counter() - began), 2))
            print(f"repeat {repeat + 1} {name}: {rates[name][-1]} tok/s", flush=True)
    median = {name: statistics.median(r) for name, r in rates.items()}
    return {
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "tokens_per_s": rates,
        "median": median,
        "pad / plain": {
            a: round(median[f"pad, {a} adapter"] / median["plain"], 3) for a in ADAPTERS
        },
    }


def steering(loaded: LoadedModel, args: argparse.Namespace) -> list[dict[str, Any]]:
    rm_path = resolve_reward_model("default")
    models = {a: PersonalizedRewardModel.load(rm_path, loaded.model) for a in ADAPTERS}
    quantize_linears_int8(models["int8"].adapter)
    calibration = load_calibration(rm_path, models["float32"].axes)
    heldout = [p.text for p in load_prompts() if p.split == "heldout"]
    poles: list[dict[str, Any]] = []
    for axis in axes_by_name(models["float32"].axes):
        limit = args.long_limit if axis.eval_new_tokens > 128 else args.limit
        prompts = heldout[:limit]
        guard: dict[str, Any] = {
            "max_new_tokens": axis.eval_new_tokens,
            "repetition_penalty": DEFAULT_REPETITION_PENALTY,
            "show_progress": False,
        }
        base = decode_conditions(loaded, [DecodeRow(p) for p in prompts], **guard)
        base_ppl = perplexities(loaded, prompts, [o.token_ids for o in base])
        score = judge(axis.judge)
        base_scores = [score(o.text) for o in base]
        for pole in (axis.low, axis.high):
            strengths = [
                axis.sign(pole.name) if n == axis.name else 0.0 for n in models["float32"].axes
            ]
            rows = [DecodeRow(p, weights=calibration.to_raw(strengths)) for p in prompts]
            texts: dict[str, list[str]] = {}
            for adapter, rm in models.items():
                print(
                    f"{axis.name}:{pole.name}, {adapter} adapter, {len(prompts)} prompts",
                    flush=True,
                )
                outs = decode_conditions(
                    loaded, rows, reward_model=rm, plausibility=DEFAULT_PLAUSIBILITY, **guard
                )
                texts[adapter] = [o.text for o in outs]
                ppl = perplexities(loaded, prompts, [o.token_ids for o in outs])
                ratio = [p / b for p, b in zip(ppl, base_ppl, strict=True)]
                sign = axis.sign(pole.name)
                poles.append(
                    {
                        "pole": f"{axis.name}:{pole.name}",
                        "adapter": adapter,
                        "prompts": len(prompts),
                        "new_tokens": axis.eval_new_tokens,
                        "wins_without_loop": sum(
                            sign * (score(o.text) - b) > 0 and not loops(o.text)
                            for o, b in zip(outs, base_scores, strict=True)
                        ),
                        "looping": sum(loops(o.text) for o in outs),
                        "ppl_ratio": [
                            round(statistics.median(ratio), 3),
                            round(statistics.fmean(ratio), 3),
                            round(max(ratio), 3),
                        ],
                        "words_per_sentence": round(
                            statistics.fmean(words_per_sentence(t) for t in texts[adapter]), 1
                        ),
                        "base_words_per_sentence": round(
                            statistics.fmean(words_per_sentence(o.text) for o in base), 1
                        ),
                        "same_as_float32": sum(
                            a == b for a, b in zip(texts[adapter], texts["float32"], strict=True)
                        ),
                    }
                )
    return poles


def render(report: dict[str, Any]) -> str:
    s, m = report["speed"], report["machine"]
    lines = [
        "# int8 adapter on the float32 trunk: speed and steering in one run",
        "",
        f"{m['cpu_model']}, {m['torch_threads']} threads, {m['date']}; {report['wall_seconds']} s. "
        f"Speed: `PADChatModel.invoke`, batch 1, {s['prompts']} prompts x {s['new_tokens']} "
        "tokens, median of interleaved repeats after a warm-up.",
        "",
        "| system | tok/s (median) | runs | / plain |",
        "| --- | ---: | --- | ---: |",
    ]
    for name, runs in s["tokens_per_s"].items():
        lines.append(
            f"| {name} | {s['median'][name]:.1f} | {', '.join(map(str, runs))} | "
            f"{s['median'][name] / s['median']['plain']:.3f}x |"
        )
    lines += [
        "",
        "Steering on the held-out prompts (strength +-1, default guard, greedy, K=10):",
        "",
        "| pole | adapter | prompts | tokens | wins (no loop) | loops | ppl x median / mean / "
        "worst | words per sentence (base) | answers = float32 adapter's |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in report["steering"]:
        ppl = " / ".join(f"{x:.2f}" for x in p["ppl_ratio"])
        lines.append(
            f"| {p['pole']} | {p['adapter']} | {p['prompts']} | {p['new_tokens']} | "
            f"{p['wins_without_loop']} ({p['wins_without_loop'] / p['prompts']:.0%}) | "
            f"{p['looping']} | {ppl} | {p['words_per_sentence']} "
            f"({p['base_words_per_sentence']}) | {p['same_as_float32']}/{p['prompts']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=128, help="speed: tokens per answer")
    parser.add_argument("--prompts", type=int, default=4, help="speed: prompts at batch 1")
    parser.add_argument("--repeats", type=int, default=2, help="speed: timed repeats")
    parser.add_argument("--limit", type=int, default=None, help="steering: held-out prompts")
    parser.add_argument(
        "--long-limit",
        type=int,
        default=24,
        help="steering: held-out prompts for long-answer axes (as alignment.py)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    began = time.perf_counter()
    loaded = load_model(dtype="float32")
    report: dict[str, Any] = {"speed": speed(loaded, args), "steering": steering(loaded, args)}
    report["wall_seconds"] = round(time.perf_counter() - began)
    report["machine"] = machine_info(loaded)
    report["argv"] = sys.argv[1:]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adapter_int8.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = render(report)
    (args.out / "adapter_int8.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
