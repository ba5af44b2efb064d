"""Other weight dtypes against float32: greedy agreement, perplexity ratios, speed, one run.

``dtype="auto"`` loads bfloat16 weights on CPUs with native bfloat16 arithmetic, and
``dtype="int8"`` quantizes the linear layers' weights. This says what each costs in
answers: the project's held-out prompts (the ``heldout`` split
of ``langchain_pad/data/prompts.json``) are decoded greedily in both dtypes, in batches,
with every row forced to N new tokens (EOS is an ordinary token here, as in
``speed.py``), and the report counts

* rows whose N tokens are identical, and where the others first differ;
* the perplexity of the float32 answers under each model (teacher-forced over the
  prompt + answer, answer tokens scored). float32 scores its own greedy answers, so the
  ratio to float32 measures how much the rounding moves the distribution, and is
  >= 1 in expectation;
* the float32 model's perplexity of each dtype's own answers, against its own: whether
  the other continuations read as fluent;
* tokens/s of each dtype's decoding (same batches, same order, interleaved by batch).

Run ``python benchmarks/dtype_agreement.py --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from speed import machine_info  # benchmarks/speed.py

from langchain_pad.datagen.prompts import load_prompts
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.models import LoadedModel, load_model

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def encode(lm: LoadedModel, texts: Sequence[str]) -> list[tuple[int, ...]]:
    out = []
    for text in texts:
        ids = lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True
        )
        ids = ids["input_ids"] if not isinstance(ids, list) else ids
        out.append(tuple(int(i) for i in ids))
    return out


def answer_nll(lm: LoadedModel, prompt: tuple[int, ...], answer: list[int]) -> float:
    """Summed negative log-likelihood of ``answer`` after ``prompt`` (float32 arithmetic)."""
    ids = torch.tensor([list(prompt) + answer])
    with torch.inference_mode():
        logits = lm.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(-logprobs.gather(1, torch.tensor(answer).view(-1, 1)).sum())


def first_difference(a: list[int], b: list[int]) -> int | None:
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))


FLOAT_HEAD = "int4-float-head"
"""int4 decoder matrices with the tied output projection left float32 (``int4`` makes
it int8): what that projection's rounding alone does to the answers."""


def _load(name: str, dtype: str) -> LoadedModel:
    if dtype != FLOAT_HEAD:
        return load_model(name, dtype=dtype)
    import copy
    import dataclasses

    from langchain_pad.quantization_int4 import quantize_linears_int4

    base = load_model(name, dtype="float32")
    model = copy.deepcopy(base.model)
    quantize_linears_int4(model, output_int8=False)
    return dataclasses.replace(base, model=model, dtype=FLOAT_HEAD)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    dtypes = ("float32", *args.dtypes)
    texts = [p.text for p in load_prompts() if p.split == "heldout"][: args.prompts]
    models = {dt: _load(args.model, dt) for dt in dtypes}
    engines = {
        dt: DecodingEngine(
            lm.model, lm.tokenizer, eos_token_ids=frozenset(), context_length=lm.context_length
        )
        for dt, lm in models.items()
    }
    prompts = encode(models["float32"], texts)
    params = SamplingParams(max_new_tokens=args.new_tokens)
    answers: dict[str, list[list[int]]] = {dt: [] for dt in dtypes}
    seconds = dict.fromkeys(dtypes, 0.0)
    for dt in dtypes:  # warm-up: one short batch each
        engines[dt].generate([GenerationRequest(prompts[0], SamplingParams(max_new_tokens=4))])
    for start in range(0, len(prompts), args.batch):
        batch = [GenerationRequest(p, params) for p in prompts[start : start + args.batch]]
        order = dtypes if (start // args.batch) % 2 == 0 else dtypes[::-1]
        for dt in order:
            began = time.perf_counter()
            outs = engines[dt].generate(batch)
            seconds[dt] += time.perf_counter() - began
            answers[dt].extend(o.token_ids for o in outs)
    scored = sum(len(a) for a in answers["float32"])

    def perplexity(model: str, of: str) -> float:
        nll = sum(
            answer_nll(models[model], prompt, answer)
            for prompt, answer in zip(prompts, answers[of], strict=True)
        )
        return math.exp(nll / scored)

    reference = perplexity("float32", "float32")
    per_dtype: dict[str, Any] = {}
    for dt in dtypes[1:]:
        diffs = [
            first_difference(a, b) for a, b in zip(answers["float32"], answers[dt], strict=True)
        ]
        differing = [d for d in diffs if d is not None]
        of_fp32 = perplexity(dt, "float32")
        own = perplexity("float32", dt)
        per_dtype[dt] = {
            "identical_rows": sum(d is None for d in diffs),
            "first_difference": diffs,
            "first_difference_median": statistics.median(differing) if differing else None,
            "perplexity_of_fp32_answers": of_fp32,
            "perplexity_ratio_on_fp32_answers": of_fp32 / reference,
            "fp32_perplexity_of_own_answers": own,
            "fp32_perplexity_ratio_own_over_fp32": own / reference,
            "tokens_per_s": scored / seconds[dt],
            "speedup_over_fp32": seconds["float32"] / seconds[dt],
        }
    return {
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "fp32_perplexity_of_fp32_answers": reference,
        "fp32_tokens_per_s": scored / seconds["float32"],
        "dtypes": per_dtype,
        "machine": machine_info(models["float32"]),
        "argv": sys.argv[1:],
    }


def render(report: dict[str, Any]) -> str:
    names = list(report["dtypes"])
    rows = report["dtypes"]
    n = report["prompts"]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return f"| {label} | " + " | ".join(cell(rows[dt]) for dt in names) + " |"

    lines = [
        "# Other weight dtypes vs float32: greedy agreement, perplexity, speed",
        "",
        f"{n} held-out prompts, greedy, {report['new_tokens']} new tokens per row (EOS not "
        f"special), batch {report['batch']}, one run. float32 scores its own answers at "
        f"perplexity {report['fp32_perplexity_of_fp32_answers']:.4f}.",
        "",
        "| what | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
        row("rows with identical tokens", lambda r: f"{r['identical_rows']}/{n}"),
        row(
            "median first differing token (rows that differ)",
            lambda r: str(r["first_difference_median"]),
        ),
        row(
            "perplexity of the fp32 answers under this dtype, ratio to fp32",
            lambda r: f"{r['perplexity_ratio_on_fp32_answers']:.4f}",
        ),
        row(
            "fp32 perplexity of this dtype's own answers, ratio to fp32's",
            lambda r: f"{r['fp32_perplexity_ratio_own_over_fp32']:.4f}",
        ),
        row("tokens/s (batch, aggregate)", lambda r: f"{r['tokens_per_s']:.1f}"),
        row("speed / fp32", lambda r: f"{r['speedup_over_fp32']:.2f}x"),
        "",
        f"float32: {report['fp32_tokens_per_s']:.1f} tokens/s in the same batches.",
        "",
        "A row that differs follows the first near-tie the rounding flips and then writes",
        "another continuation. The first perplexity ratio says how far the dtype moves the",
        "distribution on the same text; the second whether its own answers read as fluent",
        "to the float32 model (greedy answers score low under the model that wrote them, so",
        "any other dtype's score above 1 even when as good). tokens/s here come from batches",
        "of 8: take batch-1 speed from `llama_cpp.md`.",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in report["machine"].items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=56, help="held-out prompts used")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["bfloat16", "int8"],
        help=f"compared with float32; {FLOAT_HEAD}: int4 with a float32 output projection",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dtype.json").write_text(json.dumps(report, indent=2))
    (args.out / "dtype.md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
