"""Decoding speed: our ``DecodingEngine`` against transformers' ``model.generate``.

Why the benchmark is built this way:

* **Same model, same prompts, same process, same run.** Both systems decode the same
  token ids with the same weights object, so the only difference is the decoding loop
  around the forward pass. Runs are interleaved (each repeat runs engine then generate,
  the next repeat generate then engine) so that a slow patch of the machine (thermal
  state, another process on the cores) hits both systems alike instead of one.
* **Exactly N new tokens per row in both systems.** Tokens/s is only comparable when
  both do the same amount of work. ``generate`` gets ``min_new_tokens=N,
  max_new_tokens=N``. Our engine has no "minimum length" knob, so for the benchmark
  it is built with ``eos_token_ids=frozenset()``: an end-of-sequence token is then an
  ordinary token and never ends a row early, and the token budget stops every row at
  exactly N. No library code is changed for this.
* **Greedy decoding**, so both systems must choose the same tokens, and the benchmark
  checks this as it goes (the "identical" counts). One difference is expected and
  is not a bug: where the model would naturally stop, ``generate`` forbids the EOS
  token (``min_new_tokens`` masks it) and takes the runner-up, while the engine emits
  EOS as a plain token; after that point the rows legitimately diverge. So the check
  that matters is "identical up to the model's natural end"; the full-length count
  is reported too. A mismatch is reported, never fatal.
* **Batch 1 and batch 8 over the same 8 prompts.** Batch 1 decodes the prompts one
  after another; batch 8 decodes all eight at once with left padding (different
  prompt lengths, so padding and the attention mask are exercised). The work (8 rows
  x N tokens) is the same, so the batch-8/batch-1 ratio shows what batching buys.
* **tokens/s = generated tokens / wall time**, counting tokens actually produced,
  measured around the whole call (prefill, decode loop, sampling, detokenization for
  the engine); one untimed warm-up round first, then the median of ``--repeats``.
* ``torch.inference_mode()`` for both (the engine enters it itself), and ``generate``
  gets the same left-padded ``input_ids``, ``attention_mask`` and pad id as the engine.

Run ``python benchmarks/speed.py --help``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from tqdm.auto import tqdm

from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.models import DEFAULT_MODEL, LoadedModel, load_model

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

SYSTEMS: tuple[str, str] = ("engine", "generate")

PROMPTS: tuple[str, ...] = (
    "Explain in simple terms why the sky is blue.",
    "Write a short poem about a lighthouse keeper who talks to the sea.",
    "Give me three tips for staying focused while working from home.",
    "What is the difference between a list and a tuple in Python? Show a small example.",
    "Summarize the plot of Romeo and Juliet in a few sentences.",
    "I have eggs, spinach, cheese and bread. Suggest a quick dinner and how to cook it.",
    "Translate into French and explain any tricky words: 'The early bird catches the worm.'",
    "A train leaves at 3 pm and travels 120 km at 80 km/h. When does it arrive? Explain.",
)
"""Eight varied instructions (explanation, creative, advice, code, summary, recipe,
translation, arithmetic) of different lengths, so batch 8 has real left padding."""

Batch = list[tuple[int, ...]]


@dataclass(frozen=True)
class Config:
    """One benchmark cell: a batch size and a number of new tokens per row."""

    batch_size: int
    new_tokens: int


@dataclass
class RunResult:
    """One timed pass of one system over all prompts of a config."""

    seconds: float
    tokens: int
    rows: list[list[int]]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Cell:
    """Everything measured for one (config, system) pair."""

    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def tokens_per_s(self) -> list[float]:
        return [t / s for t, s in zip(self.tokens, self.seconds, strict=True)]

    def median_tps(self) -> float:
        return statistics.median(self.tokens_per_s())


@dataclass
class Check:
    """Greedy agreement between the two systems for one config, per repeat."""

    rows: int = 0
    identical_to_eos: list[int] = field(default_factory=list)
    identical_full: list[int] = field(default_factory=list)
    rows_reaching_eos: list[int] = field(default_factory=list)
    first_divergence: dict[int, int] = field(default_factory=dict)
    """Row index -> first differing position, for rows that differ before EOS."""


# --------------------------------------------------------------------------- workload


def encode_prompts(lm: LoadedModel) -> list[tuple[int, ...]]:
    """Chat-template every prompt into token ids (with the generation prompt)."""
    encoded: list[tuple[int, ...]] = []
    for prompt in PROMPTS:
        out = lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True
        )
        ids = out["input_ids"] if not isinstance(out, list) else out
        encoded.append(tuple(int(i) for i in ids))
    return encoded


def make_batches(prompt_ids: Sequence[tuple[int, ...]], batch_size: int) -> list[Batch]:
    """Split the prompts into consecutive batches of ``batch_size``.

    A batch size above the number of prompts gets one batch that cycles through them.
    """
    if batch_size >= len(prompt_ids):
        return [[prompt_ids[i % len(prompt_ids)] for i in range(batch_size)]]
    return [list(prompt_ids[i : i + batch_size]) for i in range(0, len(prompt_ids), batch_size)]


def left_pad(batch: Batch, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad a batch into ``input_ids`` and ``attention_mask`` (as the engine does)."""
    width = max(len(p) for p in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, prompt in enumerate(batch):
        ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[i, width - len(prompt) :] = 1
    return ids, mask


# --------------------------------------------------------------------------- systems


def run_engine(engine: DecodingEngine, batches: list[Batch], new_tokens: int) -> RunResult:
    """Decode every batch with our engine; time the whole pass."""
    params = SamplingParams(max_new_tokens=new_tokens)  # temperature 0 = greedy
    rows: list[list[int]] = []
    start = time.perf_counter()
    for batch in batches:
        outputs = engine.generate([GenerationRequest(p, params) for p in batch])
        rows.extend(list(o.token_ids) for o in outputs)
    seconds = time.perf_counter() - start
    return RunResult(seconds, sum(len(r) for r in rows), rows)


def run_generate(lm: LoadedModel, batches: list[Batch], new_tokens: int, pad_id: int) -> RunResult:
    """Decode every batch with ``model.generate``; time the whole pass."""
    eos = sorted(lm.eos_token_ids)
    rows: list[list[int]] = []
    start = time.perf_counter()
    for batch in batches:
        input_ids, attention_mask = left_pad(batch, pad_id)
        with torch.inference_mode():
            out = lm.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=False,
                num_beams=1,
                min_new_tokens=new_tokens,
                max_new_tokens=new_tokens,
                pad_token_id=pad_id,
                eos_token_id=eos,
            )
        for generated in out[:, input_ids.shape[1] :].tolist():
            rows.append(_cut_at_eos(generated, lm.eos_token_ids))
    seconds = time.perf_counter() - start
    return RunResult(seconds, sum(len(r) for r in rows), rows)


def _cut_at_eos(tokens: list[int], eos_ids: frozenset[int]) -> list[int]:
    """Tokens actually produced: up to and including the first EOS (the rest is padding)."""
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens


def compare(
    engine_rows: list[list[int]], generate_rows: list[list[int]], eos_ids: frozenset[int]
) -> tuple[int, int, int, dict[int, int]]:
    """Return (identical up to natural EOS, identical in full, rows reaching EOS, divergences)."""
    to_eos = full = reaching = 0
    divergence: dict[int, int] = {}
    for index, (ours, theirs) in enumerate(zip(engine_rows, generate_rows, strict=True)):
        natural_end = next((i for i, t in enumerate(ours) if t in eos_ids), len(ours))
        if natural_end < len(ours):
            reaching += 1
        full += ours == theirs
        if ours[:natural_end] == theirs[:natural_end]:
            to_eos += 1
        else:
            divergence[index] = next(
                (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                min(len(ours), len(theirs)),
            )
    return to_eos, full, reaching, divergence


# --------------------------------------------------------------------------- reporting


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(lm: LoadedModel) -> dict[str, Any]:
    """Where and with what the numbers were taken."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain")
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "transformers": transformers.__version__,
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "model": lm.name,
        "model_location": lm.location,
        "model_dtype": lm.dtype,
        "model_parameters": sum(p.numel() for p in lm.model.parameters()),
        "model_weight_bytes": weight_bytes(lm.model),
        "attn_implementation": getattr(lm.model.config, "_attn_implementation", None),
    }


def weight_bytes(model: Any) -> int:
    """Bytes of weights a token reads: parameters and buffers (int8 layers keep theirs
    as buffers), a tied weight counted once."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def build_results(
    configs: list[Config],
    cells: dict[tuple[Config, str], Cell],
    checks: dict[Config, Check],
) -> list[dict[str, Any]]:
    """One record per (config, system) with medians and the derived ratios."""
    base_batch = min(c.batch_size for c in configs)
    records: list[dict[str, Any]] = []
    for config in configs:
        for system in SYSTEMS:
            cell = cells[(config, system)]
            tps = cell.median_tps()
            other = cells[(config, "generate")].median_tps()
            base = cells[(Config(base_batch, config.new_tokens), system)].median_tps()
            check = checks[config]
            records.append(
                {
                    "system": system,
                    "batch_size": config.batch_size,
                    "new_tokens": config.new_tokens,
                    "rows": check.rows,
                    "tokens_per_s_median": tps,
                    "tokens_per_s": cell.tokens_per_s(),
                    "seconds": cell.seconds,
                    "tokens": cell.tokens,
                    "ratio_engine_vs_generate": (tps / other) if system == "engine" else None,
                    "base_batch_size": base_batch,
                    "ratio_vs_base_batch": tps / base,
                }
            )
    return records


def build_checks(checks: dict[Config, Check]) -> list[dict[str, Any]]:
    return [
        {
            "batch_size": config.batch_size,
            "new_tokens": config.new_tokens,
            "rows": check.rows,
            "identical_to_eos_min": min(check.identical_to_eos),
            "identical_full_min": min(check.identical_full),
            "rows_reaching_eos_max": max(check.rows_reaching_eos),
            "identical_to_eos_per_repeat": check.identical_to_eos,
            "identical_full_per_repeat": check.identical_full,
            "first_divergence": {str(k): v for k, v in check.first_divergence.items()},
        }
        for config, check in checks.items()
    ]


def render_markdown(report: dict[str, Any]) -> str:
    machine, settings = report["machine"], report["settings"]
    results, checks = report["results"], report["correctness"]
    base = results[0]["base_batch_size"] if results else 1
    lines = [
        "# Decoding speed: DecodingEngine vs transformers `generate`",
        "",
        f"Greedy, every row forced to exactly N new tokens, {settings['prompts']} prompts, "
        f"median of {settings['repeats']} interleaved repeats after {settings['warmup']} "
        "warm-up round(s). tokens/s = generated tokens / wall time.",
        "",
        "| system | batch | new tokens | tokens/s (median) | min-max | engine / generate "
        f"| vs batch {base} (same system) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = r["ratio_engine_vs_generate"]
        lines.append(
            f"| {r['system']} | {r['batch_size']} | {r['new_tokens']} "
            f"| {r['tokens_per_s_median']:.1f} "
            f"| {min(r['tokens_per_s']):.1f}-{max(r['tokens_per_s']):.1f} "
            f"| {f'{ratio:.2f}x' if ratio is not None else ''} "
            f"| {r['ratio_vs_base_batch']:.2f}x |"
        )
    lines += [
        "",
        "## Greedy agreement (engine tokens == generate tokens)",
        "",
        "| batch | new tokens | rows | identical up to natural EOS | identical in full "
        "| rows reaching EOS |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c in checks:
        lines.append(
            f"| {c['batch_size']} | {c['new_tokens']} | {c['rows']} "
            f"| {c['identical_to_eos_min']}/{c['rows']} | {c['identical_full_min']}/{c['rows']} "
            f"| {c['rows_reaching_eos_max']} |"
        )
    lines += [
        "",
        "Counts are the minimum over repeats. Past a row's natural EOS the systems may "
        "differ by design (`generate` masks EOS to honour `min_new_tokens`, the engine "
        "emits it as a plain token), so only the first column signals a problem.",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += ["", "## Settings", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Tokens/s of langchain-pad's DecodingEngine vs transformers generate.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--new-tokens", type=int, nargs="+", default=[128], metavar="N", help="tokens per row"
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 8], metavar="B", help="batch sizes"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name, hub id or directory")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (None: torch's)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    args = parser.parse_args(argv)
    if min(args.new_tokens) < 1 or min(args.batch_sizes) < 1 or args.repeats < 1:
        parser.error("--new-tokens, --batch-sizes and --repeats must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model, dtype=args.dtype)
    # No EOS ids: EOS never ends a row early, so every row yields exactly N tokens,
    # the same amount of work `generate` does under min_new_tokens = max_new_tokens = N.
    engine = DecodingEngine(
        lm.model, lm.tokenizer, eos_token_ids=frozenset(), context_length=lm.context_length
    )
    pad_id = engine.pad_token_id
    prompt_ids = encode_prompts(lm)
    configs = [
        Config(b, n) for n in sorted(set(args.new_tokens)) for b in sorted(set(args.batch_sizes))
    ]
    batches = {c: make_batches(prompt_ids, c.batch_size) for c in configs}
    cells = {(c, s): Cell() for c in configs for s in SYSTEMS}
    checks = {c: Check(rows=sum(len(b) for b in batches[c])) for c in configs}
    machine = machine_info(lm)

    rounds = args.warmup + args.repeats
    total = rounds * len(configs) * len(SYSTEMS)
    with tqdm(total=total, desc="benchmark", unit="run", file=sys.stderr) as bar:
        for round_index in range(rounds):
            timed = round_index >= args.warmup
            repeat = round_index - args.warmup
            # Alternate which system goes first (engine first in warm-up and odd-numbered
            # repeats), so neither one always runs right after the other.
            order = SYSTEMS if not timed or repeat % 2 == 0 else SYSTEMS[::-1]
            for config in configs:
                results: dict[str, RunResult] = {}
                for system in order:
                    label = f"repeat {repeat + 1}" if timed else "warm-up"
                    bar.set_description(
                        f"{label} b={config.batch_size} n={config.new_tokens} {system}"
                    )
                    if system == "engine":
                        results[system] = run_engine(engine, batches[config], config.new_tokens)
                    else:
                        results[system] = run_generate(
                            lm, batches[config], config.new_tokens, pad_id
                        )
                    bar.set_postfix_str(f"{results[system].tokens_per_s:.1f} tok/s")
                    bar.update()
                if not timed:
                    continue
                for system, result in results.items():
                    cells[(config, system)].seconds.append(result.seconds)
                    cells[(config, system)].tokens.append(result.tokens)
                to_eos, full, reaching, divergence = compare(
                    results["engine"].rows, results["generate"].rows, lm.eos_token_ids
                )
                check = checks[config]
                check.identical_to_eos.append(to_eos)
                check.identical_full.append(full)
                check.rows_reaching_eos.append(reaching)
                check.first_divergence.update(divergence)

    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {
        "machine": machine,
        "settings": {
            "new_tokens": sorted(set(args.new_tokens)),
            "batch_sizes": sorted(set(args.batch_sizes)),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "prompts": len(PROMPTS),
            "prompt_tokens": [len(p) for p in prompt_ids],
            "greedy": True,
            "engine_eos_token_ids": "frozenset() (EOS never ends a row; see module docstring)",
            "generate_kwargs": "do_sample=False, min_new_tokens=N, max_new_tokens=N",
            "order": "engine first in warm-up and repeats 1, 3, ...; generate first in 2, 4, ...",
            "argv": sys.argv[1:] if argv is None else list(argv),
        },
        "results": build_results(configs, cells, checks),
        "correctness": build_checks(checks),
    }
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.md").write_text(markdown)
    (args.out / "speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown)
    print(f"Wrote {args.out / 'speed.md'} and {args.out / 'speed.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
