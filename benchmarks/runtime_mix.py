"""Mixed traffic on one runtime: plain and personalized callers sharing waves.

Why it is built this way:

* **Through the public API, on the default PersRM**: every caller is a
  ``PADChatModel(runtime=...).invoke`` on its own thread, as independent requests of a
  server or an agent pool are; nothing passes a reward-model directory.
* **Independent callers, not a batch call**: the callers start together (a barrier)
  and the runtime's ``batch_window`` lets those arriving within it share a wave, which
  is what a process serving several users sees. The waves each scenario produced are
  reported beside its figure.
* **Exactly N new tokens per answer**: ``min``/``max`` tokens are not a chat-model
  knob, so each scenario counts the tokens actually generated (answers that end early
  count what they produced) over the wall time of the whole scenario.
* **Ratios from one run**: the baselines (one plain caller alone, one personalized
  caller alone) are measured in the same process, interleaved with the mixed
  scenarios, and the median of ``--repeats`` is reported; absolute tokens/s do not
  compare across machines.

Scenarios: ``plain x1``; ``pad x1``; ``4 plain + 4 pad`` (two opposite expertise
poles); ``8 pad, 8 preferences`` (eight different ``w_p``). Bars (issue 12): the mix
>= 3x one plain caller; eight preferences >= 3x one personalized caller.

``python benchmarks/runtime_mix.py --help``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from langchain_pad import PADChatModel
from langchain_pad.runtime import PADRuntime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import machine_info

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = [
    "Explain how a refrigerator keeps food cold.",
    "What causes the seasons on Earth?",
    "How does a vaccine train the immune system?",
    "Why do we have leap years?",
    "What is inflation and why does it happen?",
    "How do airplanes stay in the air?",
    "What is a black hole?",
    "How does the internet route a message?",
]
POLES = [  # strengths in pole units on the shipped PersRM
    {"expertise": -1.0},
    {"expertise": 1.0},
    {"informativeness": -1.0},
    {"informativeness": 1.0},
    {"expertise": -1.0, "informativeness": -1.0},
    {"expertise": 1.0, "informativeness": 1.0},
    {"expertise": -0.5, "informativeness": 0.5},
    {"expertise": 0.5, "informativeness": -0.25},
]


def scenario(
    runtime: PADRuntime, calls: list[dict[str, Any] | None], max_tokens: int
) -> dict[str, Any]:
    """Run one caller per entry (None: plain; else its weights) at once; tokens/s."""
    llm = PADChatModel(runtime=runtime, max_tokens=max_tokens)
    barrier = threading.Barrier(len(calls) + 1)
    tokens = [0] * len(calls)
    waves_before = runtime.stats()["totals"]["waves"]

    def caller(i: int) -> None:
        kwargs = {} if calls[i] is None else {"weights": calls[i]}
        barrier.wait()
        message = llm.invoke(PROMPTS[i % len(PROMPTS)], **kwargs)
        tokens[i] = int(message.usage_metadata["output_tokens"])  # type: ignore[index]

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    stats = runtime.stats()
    new = stats["totals"]["waves"] - waves_before
    return {
        "tokens": sum(tokens),
        "wall_s": wall,
        "tokens_per_s": sum(tokens) / wall,
        "waves": new,
        "wave_sizes": stats["wave_sizes"][-new:] if new else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-window", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "runtime_mix")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    runtime = PADRuntime(batch_window=args.batch_window)
    info = machine_info(runtime.loaded)
    scenarios: dict[str, list[dict[str, Any] | None]] = {
        "plain x1": [None],
        "pad x1": [POLES[0]],
        "4 plain + 4 pad": [None, None, None, None, POLES[0], POLES[1], POLES[0], POLES[1]],
        "8 pad, 8 preferences": list(POLES),
    }
    scenario(runtime, [None, POLES[0]], 8)  # warm-up: weights, PersRM, first waves
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
    for repeat in range(args.repeats):
        order = list(scenarios) if repeat % 2 == 0 else list(reversed(scenarios))
        for name in order:
            result = scenario(runtime, scenarios[name], args.max_tokens)
            runs[name].append(result)
            print(
                f"[{repeat + 1}/{args.repeats}] {name:>22}: {result['tokens_per_s']:6.1f} tok/s "
                f"({result['tokens']} tokens, waves {result['wave_sizes']})",
                flush=True,
            )
    median = {name: statistics.median(r["tokens_per_s"] for r in rs) for name, rs in runs.items()}
    ratios = {
        "4 plain + 4 pad / plain x1": median["4 plain + 4 pad"] / median["plain x1"],
        "8 pad, 8 preferences / pad x1": median["8 pad, 8 preferences"] / median["pad x1"],
        "pad x1 / plain x1": median["pad x1"] / median["plain x1"],
    }
    report = {
        "machine": info,
        "settings": vars(args) | {"out": str(args.out)},
        "median_tokens_per_s": median,
        "ratios": ratios,
        "bars": {"4 plain + 4 pad / plain x1": 3.0, "8 pad, 8 preferences / pad x1": 3.0},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Mixed traffic on one runtime",
        "",
        f"Machine: {info['cpu_model']}, {info['cpus_usable']} usable CPUs, torch threads "
        f"{info['torch_threads']}, commit {info['git_commit']}; {args.max_tokens} new tokens, "
        f"greedy, batch window {args.batch_window} s, median of {args.repeats}.",
        "",
        "| scenario | tok/s (median) | waves (last run) |",
        "|---|---:|---|",
    ]
    for name in scenarios:
        lines.append(f"| {name} | {median[name]:.1f} | {runs[name][-1]['wave_sizes']} |")
    lines += ["", "| ratio | value | bar |", "|---|---:|---:|"]
    for name, value in ratios.items():
        bar = report["bars"].get(name)
        lines.append(f"| {name} | {value:.2f}x | {'' if bar is None else f'{bar:.1f}x'} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    runtime.close()


if __name__ == "__main__":
    main()
