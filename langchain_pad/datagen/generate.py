"""Contrastive-prompting data generation: sample each pole, keep pairs the judge confirms.

For every prompt and axis the base model answers twice, once under each pole's system
prompt, sampled in batches on the decoding engine. The pair (high pole = chosen) is kept
only when the axis judge moves by at least the axis's ``min_gap`` in the intended
direction: contrastive prompting alone is unreliable on a 135M model (FACTS.md).
Sampling appends to ``samples.jsonl`` batch by batch, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from langchain_pad.axes import PreferenceAxis, axes_by_name
from langchain_pad.datagen.dataset import (
    PAIRS_FILE,
    SAMPLES_FILE,
    AxisCounts,
    DatasetManifest,
    PairRecord,
    SampleRecord,
    read_samples,
    sha256_file,
    write_jsonl,
    write_manifest,
)
from langchain_pad.datagen.prompts import PromptItem, load_prompts, prompts_digest
from langchain_pad.judges import judge
from langchain_pad.models import DEFAULT_MODEL

_SETTINGS_FILE = "generation_settings.json"


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 72
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1.")


def row_seed(seed: int, prompt_id: str, axis: str, pole: str) -> int:
    """A per-sample seed, stable whatever batch the sample lands in."""
    key = f"{seed}:{prompt_id}:{axis}:{pole}".encode()
    return int(hashlib.sha256(key).hexdigest()[:8], 16)


def generate_dataset(
    out_dir: str | Path,
    *,
    axes: list[str] | None = None,
    prompts_path: str | Path | None = None,
    settings: GenerationSettings | None = None,
    model_name: str = DEFAULT_MODEL,
    dataset_version: str = "1",
    limit: int | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> DatasetManifest:
    """Sample, judge and pair; write ``samples.jsonl``, ``pairs.jsonl`` and the manifest."""
    from importlib.metadata import version

    from tqdm.auto import tqdm

    from langchain_pad._messages import render_prompt
    from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
    from langchain_pad.models import load_model

    settings = settings or GenerationSettings()
    chosen_axes = axes_by_name(axes)
    prompts = load_prompts(prompts_path)
    if limit is not None:
        prompts = prompts[:limit]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    plan = {
        "settings": asdict(settings),
        "model": model_name,
        "axes": [a.name for a in chosen_axes],
        "prompts": prompts_digest(prompts_path),
        "limit": limit,
    }
    settings_path = out / _SETTINGS_FILE
    samples_path = out / SAMPLES_FILE
    if force:
        samples_path.unlink(missing_ok=True)
    elif settings_path.is_file() and json.loads(settings_path.read_text()) != plan:
        raise ValueError(
            f"{out} holds samples made with other settings ({settings_path}); pass --force to "
            "discard them, or choose another --out directory."
        )
    settings_path.write_text(json.dumps(plan, indent=2))
    samples = read_samples(samples_path)
    write_jsonl(samples_path, samples)  # drop a torn last line before appending
    done = {(s.prompt_id, s.axis, s.pole) for s in samples}

    loaded = load_model(model_name)
    engine = DecodingEngine(
        loaded.model,
        loaded.tokenizer,
        eos_token_ids=loaded.eos_token_ids,
        context_length=loaded.context_length,
    )
    todo = [
        (prompt, axis, pole)
        for axis in chosen_axes
        for pole in (axis.low, axis.high)
        for prompt in prompts
        if (prompt.id, axis.name, pole.name) not in done
    ]
    bar = tqdm(
        total=len(todo) + len(done),
        initial=len(done),
        desc="sampling answers",
        unit="answer",
        disable=not show_progress,
    )
    with samples_path.open("a", encoding="utf-8") as handle:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start : start + settings.batch_size]
            requests = [
                GenerationRequest(
                    tuple(
                        render_prompt(
                            loaded.tokenizer,
                            [
                                {"role": "system", "content": pole.system_prompt},
                                {"role": "user", "content": prompt.text},
                            ],
                        )
                    ),
                    SamplingParams(
                        max_new_tokens=settings.max_new_tokens,
                        temperature=settings.temperature,
                        top_p=settings.top_p,
                        seed=row_seed(settings.seed, prompt.id, axis.name, pole.name),
                    ),
                )
                for prompt, axis, pole in batch
            ]
            outputs = engine.generate(requests)
            for (prompt, axis, pole), output in zip(batch, outputs, strict=True):
                text = output.text.strip()
                record = SampleRecord(
                    prompt_id=prompt.id,
                    axis=axis.name,
                    pole=pole.name,
                    text=text,
                    finish_reason=output.finish_reason,
                    tokens=output.completion_tokens,
                    score=judge(axis.judge)(text),
                )
                handle.write(record.model_dump_json() + "\n")
                samples.append(record)
            handle.flush()
            bar.update(len(batch))
    bar.close()

    pairs, counts = pair_samples(prompts, chosen_axes, samples)
    write_jsonl(out / PAIRS_FILE, pairs)
    manifest = DatasetManifest(
        dataset_version=dataset_version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        langchain_pad_version=version("langchain-pad"),
        model=model_name,
        seed=settings.seed,
        settings={
            **asdict(settings),
            "system_prompts": {
                a.name: {a.low.name: a.low.system_prompt, a.high.name: a.high.system_prompt}
                for a in chosen_axes
            },
        },
        prompt_set={
            "path": str(prompts_path) if prompts_path else "langchain_pad/data/prompts.json",
            "sha256": prompts_digest(prompts_path),
            "prompts": len(prompts),
            "heldout": sum(p.split == "heldout" for p in prompts),
        },
        axes=counts,
        files={PAIRS_FILE: sha256_file(out / PAIRS_FILE), SAMPLES_FILE: sha256_file(samples_path)},
        wall_seconds=round(time.perf_counter() - started, 1),
    )
    write_manifest(out, manifest)
    return manifest


def pair_samples(
    prompts: list[PromptItem], axes: list[PreferenceAxis], samples: list[SampleRecord]
) -> tuple[list[PairRecord], dict[str, AxisCounts]]:
    """Pair each prompt's two poles; keep pairs whose judge gap reaches the axis minimum."""
    by_key = {(s.prompt_id, s.axis, s.pole): s for s in samples}
    pairs: list[PairRecord] = []
    counts: dict[str, AxisCounts] = {}
    for axis in axes:
        kept: list[PairRecord] = []
        gaps: list[float] = []
        for prompt in prompts:
            high = by_key.get((prompt.id, axis.name, axis.high.name))
            low = by_key.get((prompt.id, axis.name, axis.low.name))
            if high is None or low is None or not high.text or not low.text:
                continue
            if high.text == low.text or high.score - low.score < axis.min_gap:
                continue
            gaps.append(high.score - low.score)
            kept.append(
                PairRecord(
                    id=f"{prompt.id}:{axis.name}",
                    axis=axis.name,
                    prompt_id=prompt.id,
                    split=prompt.split,
                    prompt=prompt.text,
                    chosen=high.text,
                    rejected=low.text,
                    chosen_complete=high.finish_reason == "stop",
                    rejected_complete=low.finish_reason == "stop",
                    judge=axis.judge,
                    chosen_score=high.score,
                    rejected_score=low.score,
                )
            )
        pairs.extend(kept)
        counts[axis.name] = AxisCounts(
            low=axis.low.name,
            high=axis.high.name,
            judge=axis.judge,
            min_gap=axis.min_gap,
            prompts=len(prompts),
            pairs_kept=len(kept),
            filter_rate=round(1 - len(kept) / len(prompts), 4) if prompts else 0.0,
            train_pairs=sum(p.split == "train" for p in kept),
            heldout_pairs=sum(p.split == "heldout" for p in kept),
            mean_gap=round(statistics.fmean(gaps), 4) if gaps else 0.0,
        )
    return pairs, counts
