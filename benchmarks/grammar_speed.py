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
* **Fast-forwarding**, on structured output (a JSON schema with four fields, so keys
  and punctuation are forced): the same requests with the engine's ``fast_forward``
  on and off, at batch 1, in a batch of 4 structured rows (2 guided) and in a mixed
  batch of 8 (4 structured, 4 free; 4 guided). Greedy tokens must be equal; tok/s
  counts all rows' tokens, and the structured rows' own tok/s (their tokens over the
  time until the last of them finished) is reported too.
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
from langchain_pad.engine.grammar import JSONSchemaGrammar, RegexGrammar
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


EXTRACTIONS = [
    "Ada Lovelace, 36, was a mathematician in London. Extract the person.",
    "Bob is a 41-year-old baker from Lyon. Extract the person.",
    "Maria, a nurse aged 29, lives in Madrid. Extract the person.",
    "Kenji is 52 and works as a pilot in Osaka. Extract the person.",
]
PERSON = {
    "title": "Person",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "occupation": {"type": "string"},
    },
    "required": ["name", "age", "city", "occupation"],
}


def structured(runtime: PADRuntime, n: int, structured_rows: int, tokens: int) -> list[Any]:
    """``n`` rows, the first ``structured_rows`` JSON extractions; rows 1 and 2 of 4 guided."""
    from langchain_core.messages import HumanMessage, SystemMessage

    loaded = runtime.loaded
    rm = runtime.reward_model("default")
    spec = JSONSchemaGrammar(PERSON, max_string_length=24, close_objects=True)
    out = []
    for i in range(n):
        grammar = None
        if i < structured_rows:
            system = "Answer with one JSON object that matches this JSON schema: " + json.dumps(
                PERSON
            )
            turns = to_turns([SystemMessage(system), HumanMessage(EXTRACTIONS[i % 4])])
            grammar = runtime.grammar_compiler.compile(spec)
        else:
            turns = to_turns([HumanMessage(PROMPTS[i % len(PROMPTS)])])
        guidance = None
        if n > 1 and i % 4 in (1, 2):
            guidance = PADGuidance(rm.weight_vector({"expertise": -6.0}), reward_model=rm)
        ids = render_prompt(loaded.tokenizer, turns)
        out.append(
            GenerationRequest(tuple(ids), SamplingParams(max_new_tokens=tokens), guidance, grammar)
        )
    return out


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
    tps, results, _ = timed(runtime, batch)
    return tps, results


def timed(runtime: PADRuntime, batch: list[Any]) -> tuple[float, list[list[int]], list[float]]:
    """All rows' tokens/s, each row's token ids and each row's seconds to its last token."""
    import threading

    results: list[list[int]] = [[] for _ in batch]
    ended = [0.0] * len(batch)

    def one(i: int) -> None:
        results[i] = [e.token_id for e in runtime.stream(batch[i])]
        ended[i] = time.perf_counter()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batch))]
    start = time.perf_counter()
    with runtime.gathering(len(batch)):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - start
    return sum(len(r) for r in results) / wall, results, [e - start for e in ended]


def fast_forward_table(runtime: PADRuntime, tokens: int, repeats: int) -> dict[str, Any]:
    """Structured output with fast-forwarding on and off (see the module docstring)."""
    engine = runtime.scheduler.engine
    scenarios = {
        "structured batch 1": (1, 1),
        "structured batch 4": (4, 4),
        "mixed batch 8": (8, 4),
    }
    runs: dict[str, dict[str, list[float]]] = {
        s: {"on": [], "off": [], "on_structured": [], "off_structured": []} for s in scenarios
    }
    same = {s: True for s in scenarios}
    forwards: dict[str, dict[str, int]] = {s: {} for s in scenarios}
    for repeat in range(repeats):
        for name, (n, k) in scenarios.items():
            texts: dict[bool, list[list[int]]] = {}
            for ff in [True, False] if repeat % 2 == 0 else [False, True]:
                engine.fast_forward = ff
                before = runtime.scheduler.forward_passes
                tps, out, ended = timed(runtime, structured(runtime, n, k, tokens))
                label = "on" if ff else "off"
                forwards[name][label] = runtime.scheduler.forward_passes - before
                runs[name][label].append(tps)
                runs[name][label + "_structured"].append(sum(map(len, out[:k])) / max(ended[:k]))
                texts[ff] = out
            same[name] = same[name] and texts[True] == texts[False]
            print(
                f"[{repeat + 1}/{repeats}] {name}: fast-forward on {runs[name]['on'][-1]:.1f} "
                f"tok/s, off {runs[name]['off'][-1]:.1f}",
                flush=True,
            )
    engine.fast_forward = True
    table = {}
    for name, r in runs.items():
        med = {key: statistics.median(values) for key, values in r.items()}
        table[name] = {
            **med,
            "ratio": med["on"] / med["off"],
            "ratio_structured": med["on_structured"] / med["off_structured"],
            "same_tokens": same[name],
            "forward_passes": forwards[name],
        }
    return {"table": table, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--structured-tokens", type=int, default=96)
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
    ff = fast_forward_table(runtime, args.structured_tokens, args.repeats)
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
        "fast_forward": ff,
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
    lines += [
        "",
        "## Fast-forwarding forced tokens, structured output",
        "",
        "JSON schema with 4 fields (name, age, city, occupation; strings at most 24 "
        f"characters), {args.structured_tokens} "
        "tokens per row at most, greedy, the same requests with the engine's fast_forward on "
        "and off; tok/s over all rows, and the structured rows' own (their tokens over the "
        "time until the last of them finished).",
        "",
        "| scenario | tok/s on | tok/s off | ratio | structured tok/s on | off | ratio "
        "| forwards on / off | same tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, t in ff["table"].items():
        f = t["forward_passes"]
        lines.append(
            f"| {name} | {t['on']:.1f} | {t['off']:.1f} | {t['ratio']:.2f}x | "
            f"{t['on_structured']:.1f} | {t['off_structured']:.1f} | "
            f"{t['ratio_structured']:.2f}x | {f.get('on')} / {f.get('off')} | {t['same_tokens']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    runtime.close()


if __name__ == "__main__":
    main()
