"""bfloat16 against float32: greedy agreement, perplexity ratio and speed, one run.

``dtype="auto"`` loads bfloat16 weights on CPUs with native bfloat16 arithmetic. This
says what that costs in answers: the project's held-out prompts (the ``heldout`` split
of ``langchain_pad/data/prompts.json``) are decoded greedily in both dtypes, in batches,
with every row forced to N new tokens (EOS is an ordinary token here, as in
``speed.py``), and the report counts

* rows whose N tokens are identical, and where the others first differ;
* the perplexity of the float32 answers under each model (teacher-forced over the
  prompt + answer, answer tokens scored). float32 scores its own greedy answers, so the
  ratio bf16 / fp32 measures how much the rounding moves the distribution, and is
  >= 1 in expectation;
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from speed import machine_info  # benchmarks/speed.py

from langchain_pad.datagen.prompts import load_prompts
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.models import LoadedModel, load_model

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DTYPES = ("float32", "bfloat16")


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    texts = [p.text for p in load_prompts() if p.split == "heldout"][: args.prompts]
    models = {dt: load_model(args.model, dtype=dt) for dt in DTYPES}
    engines = {
        dt: DecodingEngine(
            lm.model, lm.tokenizer, eos_token_ids=frozenset(), context_length=lm.context_length
        )
        for dt, lm in models.items()
    }
    prompts = encode(models["float32"], texts)
    params = SamplingParams(max_new_tokens=args.new_tokens)
    answers: dict[str, list[list[int]]] = {dt: [] for dt in DTYPES}
    seconds = dict.fromkeys(DTYPES, 0.0)
    for dt in DTYPES:  # warm-up: one short batch each
        engines[dt].generate([GenerationRequest(prompts[0], SamplingParams(max_new_tokens=4))])
    for start in range(0, len(prompts), args.batch):
        batch = [GenerationRequest(p, params) for p in prompts[start : start + args.batch]]
        order = DTYPES if (start // args.batch) % 2 == 0 else DTYPES[::-1]
        for dt in order:
            began = time.perf_counter()
            outs = engines[dt].generate(batch)
            seconds[dt] += time.perf_counter() - began
            answers[dt].extend(o.token_ids for o in outs)
    pairs = zip(answers["float32"], answers["bfloat16"], strict=True)
    diffs = [first_difference(a, b) for a, b in pairs]
    nll = {dt: 0.0 for dt in DTYPES}
    for prompt, answer in zip(prompts, answers["float32"], strict=True):
        for dt in DTYPES:
            nll[dt] += answer_nll(models[dt], prompt, answer)
    scored = sum(len(a) for a in answers["float32"])
    ppl = {dt: math.exp(nll[dt] / scored) for dt in DTYPES}
    tokens = sum(len(a) for a in answers["float32"])
    differing = [d for d in diffs if d is not None]
    return {
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "identical_rows": sum(d is None for d in diffs),
        "first_difference": diffs,
        "first_difference_median": statistics.median(differing) if differing else None,
        "perplexity_of_fp32_answers": ppl,
        "perplexity_ratio_bf16_over_fp32": ppl["bfloat16"] / ppl["float32"],
        "tokens_per_s": {dt: tokens / seconds[dt] for dt in DTYPES},
        "speedup_bf16_over_fp32": seconds["float32"] / seconds["bfloat16"],
        "machine": machine_info(models["bfloat16"]),
        "argv": sys.argv[1:],
    }


def render(report: dict[str, Any]) -> str:
    ppl = report["perplexity_of_fp32_answers"]
    tps = report["tokens_per_s"]
    lines = [
        '# bfloat16 vs float32 (what `dtype="auto"` picks on a CPU with native bfloat16)',
        "",
        f"{report['prompts']} held-out prompts, greedy, {report['new_tokens']} new tokens per "
        f"row (EOS not special), batch {report['batch']}, one run.",
        "",
        "| what | figure |",
        "| --- | ---: |",
        f"| rows with identical tokens | {report['identical_rows']}/{report['prompts']} |",
        f"| median first differing token (rows that differ) | "
        f"{report['first_difference_median']} |",
        f"| perplexity of the fp32 answers, fp32 | {ppl['float32']:.4f} |",
        f"| perplexity of the fp32 answers, bf16 | {ppl['bfloat16']:.4f} |",
        f"| perplexity ratio bf16 / fp32 | {report['perplexity_ratio_bf16_over_fp32']:.4f} |",
        f"| tokens/s fp32 (batch {report['batch']}, aggregate) | {tps['float32']:.1f} |",
        f"| tokens/s bf16 | {tps['bfloat16']:.1f} |",
        f"| bf16 / fp32 speed | {report['speedup_bf16_over_fp32']:.2f}x |",
        "",
        "A row that differs follows the first near-tie the rounding flips and then writes",
        "another continuation; the perplexity ratio says whether it is as fluent. tokens/s",
        "here come from batches of 8 on a shared machine: take the speed ratio from",
        "`llama_cpp.md` (batch 1 and 8, interleaved), not from this line.",
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
