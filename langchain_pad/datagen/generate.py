"""Contrastive-prompting data generation: sample each pole, keep pairs the judges confirm.

For every prompt and axis the base model answers ``samples_per_pole`` times under each
pole's system prompt, sampled in batches on the decoding engine. The pair (high pole =
chosen) is made and filtered by ``pairing.py``: it is kept only when the axis judge moves
by at least the axis's ``min_gap`` in the intended direction (and its second judge, if it
has one, agrees): contrastive prompting alone is unreliable on a 135M model (FACTS.md).
Sampling appends to ``samples.jsonl`` batch by batch, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from langchain_pad.axes import axes_by_name
from langchain_pad.datagen.dataset import (
    PAIRS_FILE,
    SAMPLES_FILE,
    DatasetManifest,
    SampleRecord,
    read_samples,
    sha256_file,
    write_jsonl,
    write_manifest,
)
from langchain_pad.datagen.pairing import pair_samples
from langchain_pad.datagen.prompts import load_prompts, prompts_digest
from langchain_pad.judges import judge
from langchain_pad.models import DEFAULT_MODEL

_SETTINGS_FILE = "generation_settings.json"

__all__ = ["GenerationSettings", "generate_dataset", "pair_samples", "row_seed"]


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 72
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 32
    samples_per_pole: int = 1
    """Answers sampled per pole per prompt; pairing keeps the extremes (best-of-N)."""
    judge_guidance: float = 0.0
    """Strength of the axis judge as a token reward while sampling each pole (its gain per
    candidate, toward the pole; :mod:`langchain_pad.datagen.judge_guide`). 0: none."""
    pole_prompts: bool = True
    """Sample each pole under its system prompt. False, with judge guidance: both poles
    answer the plain prompt and differ only where the judge re-ranked the candidates."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.samples_per_pole < 1:
            raise ValueError("batch_size, max_new_tokens and samples_per_pole must be >= 1.")
        if not self.judge_guidance >= 0:
            raise ValueError(f"judge_guidance must be >= 0, got {self.judge_guidance!r}.")
        if not self.pole_prompts and self.judge_guidance == 0:
            raise ValueError(
                "pole_prompts=False needs judge_guidance > 0: without either, both poles "
                "would be sampled the same way and no pair could differ by design."
            )


def row_seed(seed: int, prompt_id: str, axis: str, pole: str, index: int = 0) -> int:
    """A per-sample seed, stable whatever batch the sample lands in.

    Index 0 keeps the key of one-sample-per-pole datasets, so their samples are unchanged.
    """
    key = f"{seed}:{prompt_id}:{axis}:{pole}" + (f":{index}" if index else "")
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def _plan_settings(settings: GenerationSettings) -> dict[str, object]:
    """Settings as recorded for resuming; N = 1 is left out so older runs still resume."""
    plan = asdict(settings)
    if settings.samples_per_pole == 1:
        del plan["samples_per_pole"]
    if settings.judge_guidance == 0 and settings.pole_prompts:  # as before these existed
        del plan["judge_guidance"], plan["pole_prompts"]
    return plan


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
    from langchain_pad.datagen.judge_guide import JudgeGuide, JudgeTarget
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
        "settings": _plan_settings(settings),
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
    done = {(s.prompt_id, s.axis, s.pole, s.index) for s in samples}

    loaded = load_model(model_name)
    engine = DecodingEngine(
        loaded.model,
        loaded.tokenizer,
        eos_token_ids=loaded.eos_token_ids,
        context_length=loaded.context_length,
    )
    guide = JudgeGuide(loaded.tokenizer) if settings.judge_guidance > 0 else None
    todo = [
        (prompt, axis, pole, index)
        for axis in chosen_axes
        for pole in (axis.low, axis.high)
        for prompt in prompts
        for index in range(settings.samples_per_pole)
        if (prompt.id, axis.name, pole.name, index) not in done
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
                                *(
                                    [{"role": "system", "content": pole.system_prompt}]
                                    if settings.pole_prompts
                                    else []
                                ),
                                {"role": "user", "content": prompt.text},
                            ],
                        )
                    ),
                    SamplingParams(
                        max_new_tokens=settings.max_new_tokens,
                        temperature=settings.temperature,
                        top_p=settings.top_p,
                        seed=row_seed(settings.seed, prompt.id, axis.name, pole.name, index),
                    ),
                    JudgeTarget(axis.judge, axis.sign(pole.name), settings.judge_guidance)
                    if guide is not None
                    else None,
                )
                for prompt, axis, pole, index in batch
            ]
            outputs = engine.generate(requests, guide=guide)
            for (prompt, axis, pole, index), output in zip(batch, outputs, strict=True):
                text = output.text.strip()
                record = SampleRecord(
                    prompt_id=prompt.id,
                    axis=axis.name,
                    pole=pole.name,
                    text=text,
                    finish_reason=output.finish_reason,
                    tokens=output.completion_tokens,
                    score=judge(axis.judge)(text),
                    index=index,
                    second_score=judge(axis.second_judge)(text) if axis.second_judge else None,
                )
                handle.write(record.model_dump_json() + "\n")
                samples.append(record)
            handle.flush()
            bar.update(len(batch))
    bar.close()

    pairs, counts = pair_samples(
        prompts, chosen_axes, samples, samples_per_pole=settings.samples_per_pole
    )
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
            "second_judges": {
                a.name: {"judge": a.second_judge, "min_gap": a.second_min_gap}
                for a in chosen_axes
                if a.second_judge
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
