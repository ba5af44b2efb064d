"""What the gap to llama.cpp is made of: bytes per token, and how fast each kernel reads them.

A greedy token of a 135M model on a CPU reads every weight once, so its time is bounded
below by (weight bytes) / (memory bandwidth). llama.cpp reads the GGUF's Q4_1 blocks
(98 MB); our float32 default reads 538 MB, dequantized from those same blocks. This
benchmark measures, in one run on one machine:

* ``bandwidth``: GB/s of reading a 512 MB float32 tensor (``torch.sum``), the ceiling;
* ``layer linears``: the model's own 210 decoder matrices, one token (M = 1) through
  each kernel torch offers here: MKL float32 (what ``nn.Linear`` runs), oneDNN float32
  with prepacked weights, bfloat16 weights, and int4 weights holding the GGUF's exact
  Q4_1 values (``dtype="int4"``: torch's ``_weight_int4pack_mm_for_cpu``, bfloat16
  inputs); ms per token and the GB/s each reaches;
* ``end to end``: the engine decoding greedy at batch 1 in float32, in bfloat16 and in
  ``int4``; tokens/s and how many answers equal float32's;
* ``llama.cpp`` (when llama-cpp-python is installed: ``make bench-llamacpp``) on the
  same prompts, and from the bandwidth the fastest float32 could ever be here.

Run ``python benchmarks/weight_traffic.py --help``; about 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from dtype_agreement import encode  # benchmarks/dtype_agreement.py
from speed import PROMPTS, machine_info, weight_bytes  # benchmarks/speed.py

from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.models import LoadedModel, load_model
from langchain_pad.quantization_int4 import Int4GroupLinear

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def seconds(call: Callable[[], object], repeats: int) -> float:
    call()
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs)


def read_bandwidth(repeats: int) -> float:
    data = torch.ones(128 * 1024 * 1024)  # 512 MB
    gb = data.numel() * data.element_size() / 1e9
    return gb / seconds(lambda: data.sum(), repeats)


def projections(lm: LoadedModel) -> list[tuple[Any, str, torch.nn.Linear]]:
    found = []
    for layer in lm.model.model.layers:
        for part in (layer.self_attn, layer.mlp):
            for name in PROJECTIONS:
                linear = getattr(part, name, None)
                if isinstance(linear, torch.nn.Linear):
                    found.append((part, name, linear))
    return found


def layer_linears(lm: LoadedModel, repeats: int) -> dict[str, Any]:
    """One token through the 210 decoder matrices, per kernel."""
    linears = [linear for _, _, linear in projections(lm)]
    weights = [linear.weight.detach() for linear in linears]
    inputs = {cols: torch.randn(1, cols) for cols in {w.shape[1] for w in weights}}
    f32_bytes = sum(w.numel() * 4 for w in weights)
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in weights]
    bf16 = [w.bfloat16() for w in weights]
    bf16_inputs = {cols: x.bfloat16() for cols, x in inputs.items()}
    q4 = [Int4GroupLinear(linear) for linear in linears]
    int4_bytes = sum(q.packed.numel() + q.scale_and_zero.numel() * 2 for q in q4)

    def mkl() -> None:
        for w in weights:
            torch.nn.functional.linear(inputs[w.shape[1]], w)

    def onednn() -> None:
        for w, p in zip(weights, packed, strict=True):
            torch.ops.mkldnn._linear_pointwise(inputs[w.shape[1]], p, None, "none", [], "")

    def bfloat16() -> None:
        for w in bf16:
            torch.nn.functional.linear(bf16_inputs[w.shape[1]], w)

    def int4() -> None:
        for q, w in zip(q4, weights, strict=True):
            q(inputs[w.shape[1]])

    kernels: dict[str, tuple[Callable[[], None], int]] = {
        "mkl float32 (nn.Linear)": (mkl, f32_bytes),
        "onednn float32, prepacked": (onednn, f32_bytes),
        "bfloat16 weights and activations": (bfloat16, f32_bytes // 2),
        "int4 = exact Q4_1, bfloat16 activations": (int4, int4_bytes),
    }
    rows = {}
    with torch.inference_mode():
        for name, (call, nbytes) in kernels.items():
            spent = seconds(call, repeats)
            rows[name] = {
                "ms_per_token": round(spent * 1000, 2),
                "weight_mb": round(nbytes / 1e6, 1),
                "gb_per_s": round(nbytes / 1e9 / spent, 2),
            }
    return {"matrices": len(weights), "q4_max_error": max(q.max_error for q in q4), "kernels": rows}


def decode(
    lm: LoadedModel, prompts: list[tuple[int, ...]], new: int
) -> tuple[list[list[int]], float]:
    """Greedy batch-1 answers of exactly ``new`` tokens, and new tokens per second."""
    engine = DecodingEngine(
        lm.model, lm.tokenizer, eos_token_ids=frozenset(), context_length=lm.context_length
    )
    params = SamplingParams(max_new_tokens=new)
    engine.generate(
        [GenerationRequest(prompt_ids=prompts[0], params=SamplingParams(max_new_tokens=4))]
    )
    began = time.perf_counter()
    answers = [
        engine.generate([GenerationRequest(prompt_ids=p, params=params)])[0].token_ids
        for p in prompts
    ]
    return answers, new * len(prompts) / (time.perf_counter() - began)


def end_to_end(args: argparse.Namespace, f32: LoadedModel) -> dict[str, Any]:
    prompts = encode(f32, PROMPTS[: args.prompts])
    models = {name: load_model(args.model, dtype=name) for name in ("bfloat16", "int4")}
    models = {"float32": f32, **models}
    systems: dict[str, Callable[[], tuple[list[list[int]], float]]] = {
        name: (lambda lm=lm: decode(lm, prompts, args.new_tokens)) for name, lm in models.items()
    }
    rates: dict[str, list[float]] = {name: [] for name in systems}
    answers: dict[str, list[list[int]]] = {}
    for repeat in range(args.repeats):
        order = list(systems) if repeat % 2 == 0 else list(reversed(systems))
        for name in order:
            answers[name], rate = systems[name]()
            rates[name].append(rate)
        print(f"end to end: repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    reference = answers["float32"]
    out: dict[str, Any] = {}
    for name, runs in rates.items():
        first_diff = [
            next((i for i, (a, b) in enumerate(zip(x, y, strict=True)) if a != b), None)
            for x, y in zip(answers[name], reference, strict=True)
        ]
        out[name] = {
            "tokens_per_s": round(statistics.median(runs), 2),
            "runs": [round(r, 2) for r in runs],
            "speed_vs_float32": round(
                statistics.median(runs) / statistics.median(rates["float32"]), 3
            ),
            "answers_equal_to_float32": f"{first_diff.count(None)}/{len(prompts)}",
            "first_differing_token": first_diff,
        }
    out["_bytes"] = {name: weight_bytes(lm.model) for name, lm in models.items()}
    return out


def llama_cpp_rate(args: argparse.Namespace) -> dict[str, Any] | None:
    import importlib.util

    # benchmarks/llama_cpp.py, loaded under another name: as "llama_cpp" it would shadow
    # the llama-cpp-python package it imports
    spec = importlib.util.spec_from_file_location("llama_cpp_bench", HERE / "llama_cpp.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    try:
        run, facts = bench.llama_cpp_runner(args.threads, args.new_tokens)
    except ImportError:
        return None
    prompts = PROMPTS[: args.prompts]
    run(prompts[0])
    rates = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        tokens = sum(run(p) for p in prompts)
        rates.append(tokens / (time.perf_counter() - began))
    return {"tokens_per_s": round(statistics.median(rates), 2), **facts}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    f32 = load_model(args.model)
    bandwidth = read_bandwidth(args.kernel_repeats)
    print(f"read bandwidth {bandwidth:.1f} GB/s", file=sys.stderr, flush=True)
    linears = layer_linears(f32, args.kernel_repeats)
    print("layer linears done", file=sys.stderr, flush=True)
    decoding = end_to_end(args, f32)
    llama = None if args.skip_llama_cpp else llama_cpp_rate(args)
    nbytes = decoding.pop("_bytes")
    bound = bandwidth * 1e9 / nbytes["float32"]
    report: dict[str, Any] = {
        "machine": machine_info(f32),
        "settings": {
            "prompts": args.prompts,
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "threads": args.threads,
            "greedy": True,
            "batch": 1,
        },
        "read_bandwidth_gb_per_s": round(bandwidth, 2),
        "weight_bytes": nbytes,
        "float32_bound_tokens_per_s": round(bound, 1),
        "layer_linears": linears,
        "end_to_end": decoding,
        "llama_cpp": llama,
    }
    if llama is not None:
        report["float32_bound_vs_llama_cpp"] = round(bound / llama["tokens_per_s"], 3)
        report["vs_llama_cpp"] = {
            name: round(row["tokens_per_s"] / llama["tokens_per_s"], 3)
            for name, row in decoding.items()
        }
    return report


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lin = report["layer_linears"]
    lines = [
        "# What the gap to llama.cpp is made of: weight bytes per token and kernels",
        "",
        f"Read bandwidth (torch.sum over 512 MB, {s['threads']} threads): "
        f"**{report['read_bandwidth_gb_per_s']} GB/s**. float32 weights: "
        f"{report['weight_bytes']['float32'] / 1e6:.0f} MB, so no float32 decoder can pass "
        f"**{report['float32_bound_tokens_per_s']} tokens/s** here (every weight read once "
        "per token, nothing else done).",
        "",
        f"## The {lin['matrices']} decoder matrices, one token (M = 1)",
        "",
        f"int4 codes recovered from the float32 weights with max error {lin['q4_max_error']}.",
        "",
        "| kernel | ms / token | weight MB | GB/s |",
        "|---|---:|---:|---:|",
    ]
    for name, row in lin["kernels"].items():
        lines.append(f"| {name} | {row['ms_per_token']} | {row['weight_mb']} | {row['gb_per_s']} |")
    lines += [
        "",
        f"## End to end: the engine, greedy, batch 1, {s['new_tokens']} new tokens on each of "
        f"{s['prompts']} prompts, {s['repeats']} interleaved repeats",
        "",
        "| system | tokens/s (median) | speed vs float32 | answers = float32's "
        "| first differing token |",
        "|---|---:|---:|---:|---|",
    ]
    for name, row in report["end_to_end"].items():
        lines.append(
            f"| {name} | {row['tokens_per_s']} | {row['speed_vs_float32']}x | "
            f"{row['answers_equal_to_float32']} | {row['first_differing_token']} |"
        )
    llama = report["llama_cpp"]
    if llama is not None:
        lines += [
            "",
            f"llama.cpp ({llama['gguf']}, {llama['gguf_bytes'] / 1e6:.0f} MB) on the same prompts: "
            f"**{llama['tokens_per_s']} tokens/s**; the float32 bound above is "
            f"{report['float32_bound_vs_llama_cpp']}x of it.",
            "",
            "| system | vs llama.cpp |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {ratio}x |" for name, ratio in report["vs_llama_cpp"].items()]
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in report["machine"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kernel-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-llama-cpp", action="store_true")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "weight_traffic.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "weight_traffic.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
