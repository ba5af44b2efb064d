"""Decoding speed with a grammar against without, at batch 1 and in a mixed batch.

Why it is built this way:

* **The same tokens either way.** The grammar is a regex that allows any text
  (``[\\s\\S]*``), so every step pays the full cost of a constrained row (the
  llguidance mask over the 49k vocabulary, applying it to the logits, ``consume``)
  while greedy decoding picks exactly the tokens of the unconstrained row. A grammar
  that changed the text would change the work too, and the ratio would say nothing
  about the overhead. The benchmark checks the texts are equal.
* **Through the engine the runtime uses** (``PADRuntime.stream``); rows end at EOS or at
  ``--tokens``, the same in both conditions (the tokens are the same), and tokens/s
  counts the tokens decoded.
* **Batch 1**, and a **mixed batch of 8** (4 constrained rows, 4 not; 2 of each guided by
  the shipped PersRM), against the same batch with no grammars.
* Interleaved repeats, median of ``--repeats``; ratios from one run on one machine.

``python benchmarks/grammar_speed.py``; results in ``benchmarks/results/grammar_speed.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import machine_info

from langchain_pad._messages import render_prompt, to_turns
from langchain_pad.engine import GenerationRequest, SamplingParams
from langchain_pad.engine.grammar import RegexGrammar
from langchain_pad.engine.pad import PADGuidance
from langchain_pad.runtime import PADRuntime

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = [
    "Explain how a refrigerator keeps food cold.",
    "What causes the seasons on Earth?",
    "How does a vaccine train the immune system?",
    "Why do we have leap years?",
    "What is inflation?",
    "How do airplanes stay in the air?",
    "What is a black hole?",
    "How does the internet route a message?",
]


def requests(runtime: PADRuntime, n: int, tokens: int, constrained: bool) -> list[Any]:
    from langchain_core.messages import HumanMessage

    loaded = runtime.loaded
    rm = runtime.reward_model("default")
    out = []
    for i in range(n):
        ids = render_prompt(loaded.tokenizer, to_turns([HumanMessage(PROMPTS[i % len(PROMPTS)])]))
        grammar = None
        if constrained and (n == 1 or i % 2 == 0):
            grammar = runtime.grammar_compiler.compile(RegexGrammar(r"[\s\S]*"))
        guidance = None
        if n > 1 and i % 4 in (0, 1):
            guidance = PADGuidance(rm.weight_vector({"expertise": -6.0}), reward_model=rm)
        out.append(
            GenerationRequest(tuple(ids), SamplingParams(max_new_tokens=tokens), guidance, grammar)
        )
    return out


def run(runtime: PADRuntime, batch: list[Any]) -> tuple[float, list[list[int]]]:
    import threading

    results: list[list[int]] = [[] for _ in batch]

    def one(i: int) -> None:
        results[i] = [e.token_id for e in runtime.stream(batch[i])]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batch))]
    start = time.perf_counter()
    with runtime.gathering(len(batch)):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - start
    return sum(len(r) for r in results) / wall, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "grammar_speed")
    args = parser.parse_args()
    runtime = PADRuntime()
    info = machine_info(runtime.loaded)
    scenarios = {
        "batch 1": 1,
        "mixed batch 8": 8,
    }
    run(runtime, requests(runtime, 2, 8, True))  # warm-up: compiler, PersRM, first waves
    figures: dict[str, dict[str, list[float]]] = {s: {"with": [], "without": []} for s in scenarios}
    same = {s: True for s in scenarios}
    for repeat in range(args.repeats):
        for name, n in scenarios.items():
            order = [True, False] if repeat % 2 == 0 else [False, True]
            texts: dict[bool, list[list[int]]] = {}
            for constrained in order:
                tps, out = run(runtime, requests(runtime, n, args.tokens, constrained))
                figures[name]["with" if constrained else "without"].append(tps)
                texts[constrained] = out
            same[name] = same[name] and texts[True] == texts[False]
            print(
                f"[{repeat + 1}/{args.repeats}] {name}: with {figures[name]['with'][-1]:.1f} "
                f"tok/s, without {figures[name]['without'][-1]:.1f}",
                flush=True,
            )
    table = {
        name: {
            "with": statistics.median(f["with"]),
            "without": statistics.median(f["without"]),
            "ratio": statistics.median(f["with"]) / statistics.median(f["without"]),
            "same_tokens": same[name],
        }
        for name, f in figures.items()
    }
    report = {
        "machine": info,
        "settings": vars(args) | {"out": str(args.out)},
        "table": table,
        "runs": figures,
        "bar": 0.9,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Decoding with a grammar against without",
        "",
        f"Machine: {info['cpu_model']}, torch threads {info['torch_threads']}, commit "
        f"{info['git_commit']}; {args.tokens} tokens per row, greedy, median of "
        f"{args.repeats}; grammar: a regex allowing any text (same tokens, full mask cost).",
        "",
        "| scenario | tok/s with | tok/s without | ratio (bar 0.9x) | same tokens |",
        "|---|---:|---:|---:|---|",
    ]
    for name, t in table.items():
        lines.append(
            f"| {name} | {t['with']:.1f} | {t['without']:.1f} | {t['ratio']:.2f}x | "
            f"{t['same_tokens']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    runtime.close()


if __name__ == "__main__":
    main()
