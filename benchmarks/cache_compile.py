"""Static KV caches and ``torch.compile`` against the engine's growing cache, and where a
plain decoding step spends its time. One run, one machine.

Issue 16 asks for each of these on the plain path "measured and kept only if it pays".
A greedy batch-1 decode of N tokens per prompt, timed per token after the prefill, in
four ways, interleaved per prompt:

* ``engine``: :class:`~langchain_pad.engine.DecodingEngine` as shipped (transformers'
  ``DynamicCache``, grown by concatenation each step, and the engine's own step work:
  repetition rules, top-K, detokenizing);
* ``dynamic``: a bare loop of the model's forward with a ``DynamicCache``, argmax only
  (what the engine costs over the model itself);
* ``static``: the same loop with transformers' ``StaticCache`` (preallocated to the
  prompt + N positions, written in place: no concatenation);
* ``static+compile``: that loop through ``torch.compile(model.forward)`` (inductor, no
  dynamic shapes: one graph for a one-token step). Its first call, compilation
  included, is reported on its own.

Each loop's tokens are compared with the engine's. Then a torch profile of the bare
dynamic loop gives each operator's share of a step: what the time is made of.

Run ``python benchmarks/cache_compile.py --help``; about 4 minutes with compilation.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from dtype_agreement import encode  # benchmarks/dtype_agreement.py
from speed import machine_info  # benchmarks/speed.py

from langchain_pad.datagen.prompts import load_prompts
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.models import DEFAULT_MODEL, LoadedModel, load_model

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
Loop = Callable[[tuple[int, ...], int], tuple[list[int], float, float]]
"""``(prompt, new tokens) -> (tokens, first step seconds, mean seconds per later step)``."""


def engine_loop(lm: LoadedModel) -> Loop:
    engine = DecodingEngine(
        lm.model, lm.tokenizer, eos_token_ids=frozenset(), context_length=lm.context_length
    )

    def run(prompt: tuple[int, ...], new: int) -> tuple[list[int], float, float]:
        request = GenerationRequest(prompt_ids=prompt, params=SamplingParams(max_new_tokens=new))
        stamps: list[float] = []
        tokens: list[int] = []
        start = time.perf_counter()
        for event in engine.stream([request]):
            tokens.append(event.token_id)
            stamps.append(time.perf_counter())
        # stamps[0] closes the prefill step; the later steps are one token each
        return tokens, stamps[0] - start, (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)

    return run


def cache_kwarg(model: Any) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (as the engine reads it)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def model_loop(lm: LoadedModel, cache_kind: str, forward: Callable[..., Any]) -> Loop:
    from transformers import DynamicCache, StaticCache

    model = lm.model
    kwarg = cache_kwarg(model)

    def run(prompt: tuple[int, ...], new: int) -> tuple[list[int], float, float]:
        with torch.inference_mode():
            length = len(prompt)
            if cache_kind == "static":
                cache: Any = StaticCache(config=model.config, max_cache_len=length + new)
            else:
                cache = DynamicCache(config=model.config)
            out = model(
                input_ids=torch.tensor([prompt]),
                use_cache=True,
                **{kwarg: cache},
                cache_position=torch.arange(length),
                logits_to_keep=1,
            )
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            tokens = [int(token)]
            first = later = 0.0
            for step in range(1, new):
                position = torch.tensor([length + step - 1])
                start = time.perf_counter()
                out = forward(
                    input_ids=token,
                    use_cache=True,
                    **{kwarg: cache},
                    cache_position=position,
                    position_ids=position[None],
                    logits_to_keep=1,
                )
                token = out.logits[:, -1].argmax(-1, keepdim=True)
                tokens.append(int(token))
                spent = time.perf_counter() - start
                if step == 1:
                    first = spent
                else:
                    later += spent
            return tokens, first, later / max(new - 2, 1)

    return run


def op_profile(lm: LoadedModel, prompt: tuple[int, ...], steps: int) -> dict[str, Any]:
    """Each operator's share of the self CPU time of ``steps`` bare one-token steps."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import DynamicCache

    model = lm.model
    kwarg = cache_kwarg(model)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=torch.tensor([prompt]), logits_to_keep=1, **{kwarg: cache})
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                out = model(input_ids=token, logits_to_keep=1, **{kwarg: cache})
                token = out.logits[:, -1].argmax(-1, keepdim=True)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "steps": steps,
        "ms_per_step": round(total / steps / 1000, 2),
        "ops": [
            {
                "op": e.key,
                "share": round(e.self_cpu_time_total / total, 4),
                "calls_per_step": e.count / steps,
            }
            for e in rows[:10]
        ],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    lm = load_model(args.model, dtype=args.dtype)
    texts = [p.text for p in load_prompts() if p.split == "heldout"][: args.prompts]
    prompts = encode(lm, texts)
    compiled = torch.compile(lm.model.forward, dynamic=False)
    loops: dict[str, Loop] = {
        "engine": engine_loop(lm),
        "dynamic": model_loop(lm, "dynamic", lm.model.forward),
        "static": model_loop(lm, "static", lm.model.forward),
        "static+compile": model_loop(lm, "static", compiled),
    }
    started = time.perf_counter()
    _, compile_first, _ = loops["static+compile"](prompts[0], 3)  # compiles here
    compile_seconds = time.perf_counter() - started
    for name, loop in loops.items():  # warm-up, each loop once
        if name != "static+compile":
            loop(prompts[0], 3)
    per_token: dict[str, list[float]] = {name: [] for name in loops}
    agree: dict[str, int] = {name: 0 for name in loops}
    for repeat in range(args.repeats):
        for i, prompt in enumerate(prompts):
            order = list(loops) if (i + repeat) % 2 == 0 else list(reversed(loops))
            tokens: dict[str, list[int]] = {}
            for name in order:
                tokens[name], _, seconds = loops[name](prompt, args.new_tokens)
                per_token[name].append(seconds)
            if repeat == 0:
                for name in loops:
                    agree[name] += tokens[name] == tokens["engine"]
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    medians = {name: statistics.median(v) for name, v in per_token.items()}
    return {
        "machine": machine_info(lm),
        "settings": {
            "prompts": len(prompts),
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "threads": args.threads,
            "greedy": True,
            "batch": 1,
            "dtype": args.dtype,
            "compile": "torch.compile(model.forward, dynamic=False), inductor",
        },
        "compile_first_call_seconds": round(compile_seconds, 1),
        "compile_first_step_seconds": round(compile_first, 1),
        "systems": {
            name: {
                "ms_per_token_median": round(medians[name] * 1000, 2),
                "ms_per_token_min_max": [
                    round(min(per_token[name]) * 1000, 2),
                    round(max(per_token[name]) * 1000, 2),
                ],
                "speed_vs_engine": round(medians["engine"] / medians[name], 3),
                "tokens_equal_to_engine": f"{agree[name]}/{len(prompts)}",
            }
            for name in loops
        },
        "profile": op_profile(lm, prompts[0], args.profile_steps),
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Static KV cache and torch.compile vs the engine's growing cache",
        "",
        f"Weights {s.get('dtype', 'float32')}; greedy, batch 1, {s['new_tokens']} new tokens "
        f"on each of {s['prompts']} held-out "
        f"prompts, {s['repeats']} interleaved repeats, {s['threads']} threads; ms per token "
        "after the prefill (median over prompts and repeats). Compilation: "
        f"{report['compile_first_call_seconds']} s for the first call.",
        "",
        "| system | ms / token (median) | min-max | speed vs engine | tokens = engine's |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in report["systems"].items():
        low, high = row["ms_per_token_min_max"]
        lines.append(
            f"| {name} | {row['ms_per_token_median']} | {low}-{high} | "
            f"{row['speed_vs_engine']}x | {row['tokens_equal_to_engine']} |"
        )
    p = report["profile"]
    lines += [
        "",
        f"## Where a bare one-token step goes ({p['steps']} steps, {p['ms_per_step']} ms "
        "self CPU each)",
        "",
        "| operator | share of self CPU | calls per step |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{o['op']}` | {o['share']:.1%} | {o['calls_per_step']:g} |" for o in p["ops"]]
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in report["machine"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", help="weights: float32, bfloat16, int8, int4")
    parser.add_argument("--profile-steps", type=int, default=16)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "cache_compile" if args.dtype == "float32" else f"cache_compile_{args.dtype}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
