"""PAD decoding speed: plain vs PAD in our engine, against the paper's naive algorithm.

Four systems (six with a PersRM directory, see below) decode the same chat-templated
prompts greedily in one process and run:

1. ``plain``: our ``DecodingEngine``, no guide, batch 1 (one prompt after another);
2. ``pad``: the same engine with the ``PADGuide``, batch 1, one user per call (a
   nonzero ``w_p``);
3. ``naive``: the algorithm of the PAD paper's released code, batch 1, written out here
   (it is a baseline, not library code): every step re-runs *both* models over the
   whole prefix with no KV cache, i.e. one base-model forward over the full sequence,
   then a second full forward for the PersRM (the base backbone over the full sequence
   again, then the adapter layers and the axis heads), takes the base model's top-K
   (K = 10) and picks ``argmax log pi_LM(a|s) + beta * w_p . phi(s, a)`` with ``phi``
   normalized over the whole vocabulary as in the paper (eq. 5-7);
4. ``pad_b8``: the engine with PAD on all eight prompts at once, each row a different
   user (different ``w_p``).

Why the benchmark is built this way:

* **Same work everywhere.** Every row produces exactly N tokens: the engine is built
  with ``eos_token_ids=frozenset()`` (as in ``benchmarks/speed.py``), so EOS is an
  ordinary token and the token budget ends each row; the naive loop simply runs N
  steps. tokens/s = generated tokens / wall time around the whole call (prefill,
  decode loop, token choice and, for the engine, incremental detokenization).
* **Batch 1 PAD and batch 8 PAD do the same rows.** Batch-1 PAD decodes prompt ``i``
  with user ``i``'s ``w_p``, one call each; batch 8 decodes the same eight
  (prompt, ``w_p``) pairs in one call. So the batch-8 / batch-1 ratio is what batching
  buys, and the batch-8 rows can be checked against the same rows decoded alone.
* **The naive baseline is quadratic**, so ``--naive-max-tokens`` caps its tokens per
  row and ``--naive-prompts`` the number of prompts it decodes. Comparing its tokens/s
  with engine tokens/s measured over a different length or different prompts would be
  unfair (later tokens cost the naive loop more), so the batch-1 engine runs also
  record the time at which each row reached the naive length, and the naive/plain and
  PAD/naive ratios use engine tokens/s over *the same prompts and the same number of
  tokens* ("matched"). Where the naive loop could be written more or less cheaply it
  gets the cheaper choice (only the last position's logits, heads only on the last
  position), so PAD/naive is a conservative figure.
* **Interleaved and repeated.** One warm-up round (untimed; the naive loop only warms
  up on a few tokens of one prompt, since its cost is all in the timed runs), then
  ``--repeats`` rounds; each round runs every system back to back, in the listed order
  in odd-numbered repeats and reversed in even-numbered ones, so a slow moment on the
  machine hits all systems alike. Medians over repeats are reported.
* **Checks while measuring (reported, never fatal):** PAD with ``w_p = 0`` must choose
  the same tokens as plain decoding (one untimed pass at the end); batch-8 PAD rows
  must equal the same rows decoded alone; the naive loop should choose the same tokens
  as the engine's PAD (both are exact greedy PAD; only float rounding between cached
  and uncached forwards could flip a near-tie); and the count of rows where PAD with
  the users' ``w_p`` differs from plain decoding shows that the reward is active.
* **The shipped PersRM, and the public API.** By default the engine rows use the
  shipped default PersRM, with the raw ``w_p`` that each user's strengths resolve to, and
  two more systems decode the same prompts through ``PADChatModel.invoke`` without and
  with ``weights=`` (those strengths) on a runtime over the same loaded model: what a
  user gets, gated reward calls and the default guard included. ``--reward-model
  untrained`` keeps the earlier setup instead (an untrained PersRM over three axes, its
  heads perturbed with ``torch.manual_seed(0)``, ``+0.02 * randn``, so the reward is
  nonzero; no ``invoke`` rows, which need a PersRM directory). Speed does not depend on
  the trained values, but the gate does: how often a step is decided depends on them.

Prompts, prompt encoding and the machine description come from ``benchmarks/speed.py``
(imported: running this file as a script puts ``benchmarks/`` on ``sys.path``). Run
``python benchmarks/pad_speed.py --help``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from naive_pad import run_naive  # benchmarks/naive_pad.py: the paper's algorithm
from speed import PROMPTS, encode_prompts, machine_info  # benchmarks/speed.py: same prompts
from tqdm.auto import tqdm

from langchain_pad import PADChatModel, PADRuntime
from langchain_pad.calibration import load_calibration
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.engine.pad import PADGuidance, PADGuide
from langchain_pad.models import DEFAULT_MODEL, LoadedModel, load_model, resolve_reward_model
from langchain_pad.reward_model import PersonalizedRewardModel

DEFAULT_OUT = Path(__file__).resolve().parent / "results"

AXES: tuple[str, ...] = ("expertise", "informativeness", "style")

USER_WEIGHTS: tuple[tuple[float, ...], ...] = (
    (1.0, 0.5, -0.5),
    (-1.0, 0.3, 0.8),
    (0.2, 1.0, 0.0),
    (0.7, -0.7, 0.4),
    (-0.4, -0.6, 1.0),
    (0.9, 0.9, 0.9),
    (-0.8, 0.2, -0.3),
    (0.0, -1.0, 0.5),
)
"""One user (``w_p`` over ``AXES``) per prompt: eight different, all nonzero."""


ENGINE_SYSTEMS: tuple[str, ...] = ("plain", "pad", "naive", "pad_b8")
API_SYSTEMS: tuple[str, ...] = ("api_plain", "api_pad")
"""``PADChatModel.invoke`` without and with ``weights=``: only for a PersRM directory
(the shipped default or a trained one), which the public API needs."""
LABELS: dict[str, str] = {
    "plain": "plain (engine)",
    "pad": "PAD (engine)",
    "naive": "PAD naive (paper's algorithm)",
    "pad_b8": "PAD (engine), 8 users",
    "api_plain": "plain (`PADChatModel.invoke`)",
    "api_pad": "PAD (`PADChatModel.invoke`, `weights=`)",
}
BATCH: dict[str, int] = {
    "plain": 1,
    "pad": 1,
    "naive": 1,
    "pad_b8": len(PROMPTS),
    "api_plain": 1,
    "api_pad": 1,
}
PAD_VS_PLAIN_TARGET = 0.9
"""Issue 16's bar for PAD / plain at batch 1."""

WARMUP_NAIVE_TOKENS = 4
"""The naive loop's warm-up: this many tokens of the first prompt."""

HEAD_NOISE = 0.02
"""Scale of the fixed perturbation of the untrained PersRM's heads."""

Weights = tuple[float, ...]


@dataclass
class PassResult:
    """One pass of one system over its prompts."""

    rows: list[list[int]]
    seconds: float
    prefix_seconds: list[float] = field(default_factory=list)
    """Batch-1 engine runs: per prompt, seconds until it had produced the naive length."""
    counted: int | None = None
    """Tokens reported by the public API (its runs keep no token ids in ``rows``)."""

    @property
    def tokens(self) -> int:
        return self.counted if self.counted is not None else sum(len(r) for r in self.rows)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Series:
    """Timed repeats of one measurement."""

    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def add(self, seconds: float, tokens: int) -> None:
        self.seconds.append(seconds)
        self.tokens.append(tokens)

    def tokens_per_s(self) -> list[float]:
        return [t / s for t, s in zip(self.tokens, self.seconds, strict=True)]

    def median(self) -> float:
        return statistics.median(self.tokens_per_s())

    def as_dict(self) -> dict[str, Any]:
        tps = self.tokens_per_s()
        return {
            "tokens_per_s_median": statistics.median(tps),
            "tokens_per_s": tps,
            "seconds": self.seconds,
            "tokens": self.tokens,
        }


@dataclass
class Agreement:
    """Rows with identical tokens in two decodings, per repeat, and where others differ."""

    rows: int = 0
    identical: list[int] = field(default_factory=list)
    first_divergence: dict[int, int] = field(default_factory=dict)

    def add(self, ours: list[list[int]], theirs: list[list[int]]) -> None:
        same = 0
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if a == b:
                same += 1
                continue
            self.first_divergence[index] = next(
                (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
        self.identical.append(same)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "identical_min": min(self.identical) if self.identical else None,
            "identical_per_repeat": self.identical,
            "first_divergence": {str(k): v for k, v in sorted(self.first_divergence.items())},
        }


# --------------------------------------------------------------------------- PersRM


def build_reward_model(
    lm_model: Any, adapted_layers: int, name: str = "untrained"
) -> PersonalizedRewardModel:
    """The PersRM ``name`` (``default``: the shipped one; a directory), or for
    ``untrained`` one whose heads are nudged off the identity, so ``phi != 0``."""
    if name != "untrained":
        return PersonalizedRewardModel.load(resolve_reward_model(name), lm_model)
    rm = PersonalizedRewardModel(lm_model, list(AXES), beta=1.0, adapted_layers=adapted_layers)
    torch.manual_seed(0)
    with torch.no_grad():
        rm.heads.add_(HEAD_NOISE * torch.randn_like(rm.heads))
    return rm


def run_api(
    llm: PADChatModel, new_tokens: int, weights: Sequence[dict[str, float]] | None
) -> PassResult:
    """Batch 1 through the public API: ``invoke`` per prompt (user ``i``'s strengths)."""
    llm = llm.model_copy(update={"max_tokens": new_tokens})
    total, seconds = 0, 0.0
    for index, prompt in enumerate(PROMPTS):
        kwargs: dict[str, Any] = {"weights": weights[index]} if weights is not None else {}
        start = time.perf_counter()
        message = llm.invoke(prompt, **kwargs)
        seconds += time.perf_counter() - start
        if message.usage_metadata is None:
            raise RuntimeError("PADChatModel.invoke returned no usage metadata")
        total += message.usage_metadata["output_tokens"]
    return PassResult([], seconds, counted=total)


def api_model(lm: LoadedModel, reward_model: str, candidates: int) -> PADChatModel:
    """A chat model on a runtime over ``lm`` that never ends a row at EOS."""
    no_eos = dataclasses.replace(lm, eos_token_ids=frozenset())
    runtime = PADRuntime.from_loaded(no_eos, candidates=candidates)
    return PADChatModel(runtime=runtime, reward_model=reward_model)


# --------------------------------------------------------------------------- systems


def run_engine_alone(
    engine: DecodingEngine,
    guide: PADGuide | None,
    prompts: Sequence[tuple[int, ...]],
    new_tokens: int,
    weights: Sequence[Weights] | None,
    prefix: int,
) -> PassResult:
    """Batch 1: decode each prompt in its own call (with its user's ``w_p`` if given).

    Also records, per prompt, when it had produced ``prefix`` tokens (for the ratios
    against the naive loop, which may decode fewer tokens).
    """
    params = SamplingParams(max_new_tokens=new_tokens)  # temperature 0 = greedy
    rows: list[list[int]] = []
    prefix_seconds: list[float] = []
    total = 0.0
    for index, prompt in enumerate(prompts):
        guidance = PADGuidance(weights[index]) if weights is not None else None
        request = GenerationRequest(prompt, params, guidance)
        tokens: list[int] = []
        at_prefix = float("nan")
        start = time.perf_counter()
        for event in engine.stream([request], guide=guide):
            tokens.append(event.token_id)
            if len(tokens) == prefix:
                at_prefix = time.perf_counter() - start
        total += time.perf_counter() - start
        rows.append(tokens)
        prefix_seconds.append(at_prefix)
    return PassResult(rows, total, prefix_seconds)


def run_engine_batch(
    engine: DecodingEngine,
    guide: PADGuide,
    prompts: Sequence[tuple[int, ...]],
    new_tokens: int,
    weights: Sequence[Weights],
) -> PassResult:
    """Batch 8: all prompts in one call, row ``i`` guided by user ``i``'s ``w_p``."""
    params = SamplingParams(max_new_tokens=new_tokens)
    requests = [
        GenerationRequest(p, params, PADGuidance(w)) for p, w in zip(prompts, weights, strict=True)
    ]
    start = time.perf_counter()
    outputs = engine.generate(requests, guide)
    seconds = time.perf_counter() - start
    return PassResult([list(o.token_ids) for o in outputs], seconds)


# --------------------------------------------------------------------------- reporting


def build_results(
    new_tokens: list[int],
    naive_tokens: dict[int, int],
    naive_prompts: int,
    series: dict[tuple[int, str], Series],
    systems: Sequence[str],
) -> list[dict[str, Any]]:
    """Per N: every system's tokens/s, the matched engine numbers, ratios and targets."""
    records: list[dict[str, Any]] = []
    for n in new_tokens:
        med = {s: series[(n, s)].median() for s in systems}
        plain_matched = series[(n, "plain_matched")].median()
        pad_matched = series[(n, "pad_matched")].median()
        ratios = {
            "pad_vs_plain": med["pad"] / med["plain"],
            "naive_vs_plain": med["naive"] / plain_matched,
            "pad_vs_naive": pad_matched / med["naive"],
            "pad_b8_vs_pad_b1": med["pad_b8"] / med["pad"],
        }
        targets = {
            "pad_vs_plain": {
                "target": PAD_VS_PLAIN_TARGET,
                "met": ratios["pad_vs_plain"] >= PAD_VS_PLAIN_TARGET,
            },
            "pad_b8_vs_pad_b1": {"target": 3.0, "met": ratios["pad_b8_vs_pad_b1"] >= 3.0},
        }
        if "api_pad" in med:
            ratios["api_pad_vs_api_plain"] = med["api_pad"] / med["api_plain"]
            targets["api_pad_vs_api_plain"] = {
                "target": PAD_VS_PLAIN_TARGET,
                "met": ratios["api_pad_vs_api_plain"] >= PAD_VS_PLAIN_TARGET,
            }
        records.append(
            {
                "new_tokens": n,
                "naive_tokens": naive_tokens[n],
                "naive_prompts": naive_prompts,
                "naive_reduced": naive_tokens[n] < n or naive_prompts < len(PROMPTS),
                "systems": {
                    s: {"batch_size": BATCH[s], **series[(n, s)].as_dict()} for s in systems
                },
                "matched_to_naive": {
                    "plain": series[(n, "plain_matched")].as_dict(),
                    "pad": series[(n, "pad_matched")].as_dict(),
                },
                "ratios": ratios,
                "targets": targets,
            }
        )
    return records


def _fmt_tps(record: dict[str, Any]) -> tuple[str, str]:
    tps = record["tokens_per_s"]
    return f"{record['tokens_per_s_median']:.1f}", f"{min(tps):.1f}-{max(tps):.1f}"


def persrm_sentence(persrm: dict[str, Any]) -> str:
    if not persrm["trained"]:
        return (
            f"The PersRM is **untrained** ({persrm['adapted_layers']} adapter layers, "
            f"{len(AXES)} axes) with its heads perturbed deterministically so that the reward "
            "is nonzero; speed does not depend on trained values."
        )
    return (
        f"The PersRM is `{persrm['name']}` (trained; axes {', '.join(persrm['axes'])}); the "
        "engine rows use the raw `w_p` that the `invoke` rows' strengths resolve to, so both "
        "do the same work, under the default plausibility floor and gated reward calls."
    )


def render_markdown(report: dict[str, Any]) -> str:
    machine, settings = report["machine"], report["settings"]
    results, checks = report["results"], report["correctness"]
    lines = [
        "# PAD decoding speed: engine (plain, PAD) vs the paper's naive algorithm",
        "",
        f"Greedy, every row forced to exactly N new tokens, median of {settings['repeats']} "
        f"interleaved repeats after {settings['warmup']} warm-up round(s). "
        "tokens/s = generated tokens / wall time; batch 8 is the aggregate over its rows.",
        "",
        persrm_sentence(settings["persrm"]),
        "",
        "## Speed",
        "",
        "| system | batch | rows | new tokens per row | tokens/s (median) | min-max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for system in r["systems"]:
            row_count = r["naive_prompts"] if system == "naive" else len(PROMPTS)
            tokens = r["naive_tokens"] if system == "naive" else r["new_tokens"]
            median, spread = _fmt_tps(r["systems"][system])
            lines.append(
                f"| {LABELS[system]} | {BATCH[system]} | {row_count} | {tokens} "
                f"| {median} | {spread} |"
            )
        if r["naive_reduced"]:
            for system in ("plain", "pad"):
                median, spread = _fmt_tps(r["matched_to_naive"][system])
                lines.append(
                    f"| {LABELS[system]}, matched to naive | 1 | {r['naive_prompts']} "
                    f"| first {r['naive_tokens']} of {r['new_tokens']} | {median} | {spread} |"
                )
    lines += [
        "",
        "## Ratios",
        "",
        f"| new tokens | PAD / plain (target >= {PAD_VS_PLAIN_TARGET}) "
        f"| `invoke` PAD / plain (target >= {PAD_VS_PLAIN_TARGET}) | naive / plain "
        "| PAD / naive | PAD batch 8 / PAD batch 1 (target >= 3) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratios, targets = r["ratios"], r["targets"]

        def shown(key: str, ratios: dict[str, float] = ratios, targets: Any = targets) -> str:
            if key not in ratios:
                return "not run (no PersRM directory)"
            met = "met" if targets[key]["met"] else "NOT met"
            return f"{ratios[key]:.3f}x ({met})"

        lines.append(
            f"| {r['new_tokens']} | {shown('pad_vs_plain')} | {shown('api_pad_vs_api_plain')} "
            f"| {ratios['naive_vs_plain']:.3f}x | {ratios['pad_vs_naive']:.1f}x "
            f"| {shown('pad_b8_vs_pad_b1')} |"
        )
    lines += [""]
    reduced = [r for r in results if r["naive_reduced"]]
    if reduced:
        for r in reduced:
            lines.append(
                f"- **N = {r['new_tokens']}: the naive algorithm was measured on "
                f"{r['naive_prompts']} of {len(PROMPTS)} prompts at {r['naive_tokens']} "
                f"tokens per row** (capped by `--naive-max-tokens` / `--naive-prompts`), "
                "not the full workload."
            )
    lines.append(
        "- naive / plain and PAD / naive compare with plain and PAD tokens/s measured in the "
        "same batch-1 runs up to the moment each row had as many tokens as the naive loop "
        "produced, on the same prompts (the *matched* rows when these differ from the full "
        "run). The naive loop's cost per token grows with the sequence, so the ratio at a "
        "capped length understates how far behind it is at the full length."
    )
    lines += [
        "",
        "## Checks (rows with identical tokens; minimum over repeats)",
        "",
        "| new tokens | PAD w_p=0 == plain | PAD batch 8 == alone | naive == engine PAD "
        "| PAD (users' w_p) != plain |",
        "|---:|---:|---:|---:|---:|",
    ]
    for c in checks:
        z, b8, nv = c["pad_zero_vs_plain"], c["pad_b8_vs_alone"], c["naive_vs_pad"]
        changed = c["pad_changed_vs_plain"]
        lines.append(
            f"| {c['new_tokens']} | {z['identical_min']}/{z['rows']} "
            f"| {b8['identical_min']}/{b8['rows']} "
            f"| {nv['identical_min']}/{nv['rows']} (first {c['naive_tokens']} tokens) "
            f"| {changed}/{len(PROMPTS)} |"
        )
    lines += [
        "",
        "The first three should be rows/rows; a near-tie flipped by float rounding "
        "(batched vs single rows, cached vs uncached forwards) can occasionally cost one "
        "row, but more points at a bug (`pad_speed.json` has the first differing position). "
        "The last column is informational: it shows that the reward steers.",
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
        description="Tokens/s of plain and PAD decoding in langchain-pad's engine vs the "
        "naive PAD algorithm of the paper's code.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--new-tokens", type=int, nargs="+", default=[128], metavar="N", help="tokens per row"
    )
    parser.add_argument(
        "--naive-max-tokens",
        type=int,
        default=None,
        metavar="M",
        help="cap on the naive loop's tokens per row (None: N, the full length)",
    )
    parser.add_argument(
        "--naive-prompts",
        type=int,
        default=len(PROMPTS),
        metavar="P",
        help="decode only the first P prompts with the naive loop",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds")
    parser.add_argument("--candidates", type=int, default=10, help="K: candidates PAD scores")
    parser.add_argument(
        "--reward-model",
        default="default",
        help="PersRM: 'default' (the shipped one), a directory, or 'untrained' (perturbed "
        "heads, 3 axes; no public-API rows, which need a PersRM directory)",
    )
    parser.add_argument(
        "--adapted-layers", type=int, default=4, help="adapter layers of the untrained PersRM"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name, hub id or directory")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (None: torch's)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    args = parser.parse_args(argv)
    if min(args.new_tokens) < 1 or args.repeats < 1 or args.candidates < 1:
        parser.error("--new-tokens, --repeats and --candidates must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.naive_max_tokens is not None and args.naive_max_tokens < 1:
        parser.error("--naive-max-tokens must be >= 1")
    if not 1 <= args.naive_prompts <= len(PROMPTS):
        parser.error(f"--naive-prompts must be between 1 and {len(PROMPTS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model, dtype=args.dtype)
    rm = build_reward_model(lm.model, args.adapted_layers, args.reward_model)
    guide = PADGuide(rm, default_candidates=args.candidates)
    trained = args.reward_model != "untrained"
    strengths = [w[: len(rm.axes)] for w in USER_WEIGHTS]
    users: list[Weights] = list(USER_WEIGHTS)
    api_weights: list[dict[str, float]] = []
    if trained:  # the engine rows decode what the invoke rows' strengths resolve to
        calibration = load_calibration(resolve_reward_model(args.reward_model), rm.axes)
        users = [tuple(calibration.to_raw(list(s))) for s in strengths]
        api_weights = [dict(zip(rm.axes, s, strict=True)) for s in strengths]
        llm = api_model(lm, args.reward_model, args.candidates)
    systems = (*ENGINE_SYSTEMS, *(API_SYSTEMS if trained else ()))
    zero_weights = (0.0,) * len(rm.axes)
    # No EOS ids: EOS never ends a row early, so every row yields exactly N tokens.
    engine = DecodingEngine(
        lm.model, lm.tokenizer, eos_token_ids=frozenset(), context_length=lm.context_length
    )
    prompts = encode_prompts(lm)
    naive_prompts = prompts[: args.naive_prompts]
    naive_weights = users[: args.naive_prompts]
    new_tokens = sorted(set(args.new_tokens))
    naive_tokens = {n: min(n, args.naive_max_tokens or n) for n in new_tokens}
    machine = machine_info(lm)

    kinds = (*systems, "plain_matched", "pad_matched")
    series = {(n, k): Series() for n in new_tokens for k in kinds}
    b8_alone = {n: Agreement(rows=len(prompts)) for n in new_tokens}
    naive_vs_pad = {n: Agreement(rows=len(naive_prompts)) for n in new_tokens}
    zero_vs_plain = {n: Agreement(rows=len(prompts)) for n in new_tokens}
    changed: dict[int, list[int]] = {n: [] for n in new_tokens}
    last_plain: dict[int, list[list[int]]] = {}

    def run(system: str, n: int, warmup: bool) -> PassResult:
        prefix = naive_tokens[n]
        if system == "plain":
            return run_engine_alone(engine, None, prompts, n, None, prefix)
        if system == "pad":
            return run_engine_alone(engine, guide, prompts, n, users, prefix)
        if system == "pad_b8":
            return run_engine_batch(engine, guide, prompts, n, users)
        if system == "api_plain":
            return run_api(llm, n, None)
        if system == "api_pad":
            return run_api(llm, n, api_weights)
        if warmup:
            count = min(prefix, WARMUP_NAIVE_TOKENS)
            rows, seconds = run_naive(lm.model, rm, prompts[:1], count, users[:1], args.candidates)
        else:
            rows, seconds = run_naive(
                lm.model, rm, naive_prompts, prefix, naive_weights, args.candidates
            )
        return PassResult(rows, seconds)

    rounds = args.warmup + args.repeats
    total = rounds * len(new_tokens) * len(systems) + len(new_tokens)
    with tqdm(total=total, desc="pad benchmark", unit="run", file=sys.stderr) as bar:
        for round_index in range(rounds):
            timed = round_index >= args.warmup
            repeat = round_index - args.warmup
            # Listed order in warm-up and odd-numbered repeats, reversed in even-numbered ones.
            order = systems if not timed or repeat % 2 == 0 else systems[::-1]
            label = f"repeat {repeat + 1}" if timed else "warm-up"
            for n in new_tokens:
                results: dict[str, PassResult] = {}
                for system in order:
                    bar.set_description(f"{label} n={n} {system}")
                    results[system] = run(system, n, not timed)
                    bar.set_postfix_str(f"{results[system].tokens_per_s:.1f} tok/s")
                    bar.update()
                if not timed:
                    continue
                for system, result in results.items():
                    series[(n, system)].add(result.seconds, result.tokens)
                m = naive_tokens[n]
                for system in ("plain", "pad"):
                    prefix_s = results[system].prefix_seconds[: len(naive_prompts)]
                    series[(n, f"{system}_matched")].add(sum(prefix_s), m * len(naive_prompts))
                b8_alone[n].add(results["pad_b8"].rows, results["pad"].rows)
                naive_vs_pad[n].add(
                    results["naive"].rows,
                    [r[:m] for r in results["pad"].rows[: len(naive_prompts)]],
                )
                changed[n].append(
                    sum(
                        a != b
                        for a, b in zip(results["pad"].rows, results["plain"].rows, strict=True)
                    )
                )
                last_plain[n] = results["plain"].rows
        # Untimed check: PAD with w_p = 0 must pick exactly what plain decoding picks.
        for n in new_tokens:
            bar.set_description(f"check n={n} PAD w_p=0")
            zero = run_engine_alone(engine, guide, prompts, n, [zero_weights] * len(prompts), n)
            zero_vs_plain[n].add(zero.rows, last_plain[n])
            bar.update()

    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {
        "machine": machine,
        "settings": {
            "new_tokens": new_tokens,
            "naive_tokens": {str(n): m for n, m in naive_tokens.items()},
            "naive_prompts": args.naive_prompts,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "warmup_naive": f"{WARMUP_NAIVE_TOKENS} tokens of the first prompt",
            "prompts": len(PROMPTS),
            "prompt_tokens": [len(p) for p in prompts],
            "greedy": True,
            "candidates_k": args.candidates,
            "user_weights": [list(w) for w in users],
            "user_strengths": [list(s) for s in strengths] if trained else None,
            "persrm": {
                "trained": trained,
                "name": args.reward_model,
                "axes": list(rm.axes),
                "adapted_layers": len(rm.adapter.layers),
                "beta": rm.beta,
                "heads": "trained"
                if trained
                else f"identity + {HEAD_NOISE} * randn (torch.manual_seed(0))",
                "note": "speed does not depend on trained values",
            },
            "engine_pad_normalize": guide.normalize,
            "naive_phi_normalize": "vocab (as in the paper)",
            "engine_eos_token_ids": "frozenset() (EOS never ends a row)",
            "order": f"{', '.join(systems)} in warm-up and repeats 1, 3, ...; reversed in "
            "2, 4, ...",
            "argv": sys.argv[1:] if argv is None else list(argv),
        },
        "results": build_results(new_tokens, naive_tokens, args.naive_prompts, series, systems),
        "correctness": [
            {
                "new_tokens": n,
                "naive_tokens": naive_tokens[n],
                "pad_zero_vs_plain": zero_vs_plain[n].as_dict(),
                "pad_b8_vs_alone": b8_alone[n].as_dict(),
                "naive_vs_pad": naive_vs_pad[n].as_dict(),
                "pad_changed_vs_plain": min(changed[n]),
                "pad_changed_vs_plain_per_repeat": changed[n],
            }
            for n in new_tokens
        ],
    }
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pad_speed.md").write_text(markdown)
    (args.out / "pad_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown)
    print(f"Wrote {args.out / 'pad_speed.md'} and {args.out / 'pad_speed.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
