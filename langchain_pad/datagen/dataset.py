"""The versioned preference dataset on disk: ``pairs.jsonl``, ``samples.jsonl``, manifest.

``samples.jsonl`` holds every sampled answer (kept or not) so filters can be re-run
and audited; ``pairs.jsonl`` holds the pairs the judges agreed with; ``manifest.json``
says how they were made (model, seed, settings, prompt-set digest) and what survived
(counts and filter rates per axis), with each file's sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

DATASET_FORMAT = "langchain-pad-preferences"
DATASET_FORMAT_VERSION = 1
PAIRS_FILE = "pairs.jsonl"
SAMPLES_FILE = "samples.jsonl"
MANIFEST_FILE = "manifest.json"


class SampleRecord(BaseModel):
    prompt_id: str
    axis: str
    pole: str
    text: str
    finish_reason: str
    tokens: int
    score: float
    """The axis judge's score of ``text``."""
    index: int = 0
    """Which of the pole's ``samples_per_pole`` samples for this prompt (0 when one)."""
    second_score: float | None = None
    """The axis's second judge's score of ``text``, when the axis has one."""


class PairRecord(BaseModel):
    """One stage-1 pair: ``chosen`` is the axis's high pole, ``rejected`` its low pole."""

    id: str
    axis: str
    prompt_id: str
    split: Literal["train", "heldout"]
    prompt: str
    chosen: str
    rejected: str
    chosen_complete: bool
    """The chosen answer ended on its own (EOS), so its end-of-turn token is part of it."""
    rejected_complete: bool
    judge: str
    chosen_score: float
    rejected_score: float
    second_judge: str | None = None
    chosen_second_score: float | None = None
    rejected_second_score: float | None = None


class AxisCounts(BaseModel):
    low: str
    high: str
    judge: str
    min_gap: float
    prompts: int
    pairs_kept: int
    filter_rate: float
    """Share of prompts whose pair the judge rejected."""
    train_pairs: int
    heldout_pairs: int
    mean_gap: float
    samples_per_pole: int = 1
    second_judge: str | None = None
    second_min_gap: float | None = None
    first_judge_pairs: int | None = None
    """Prompts whose best pair passed the axis judge, before the second judge."""
    second_judge_agreement: float | None = None
    """Share of those the second judge agreed with (kept / first_judge_pairs)."""


class DatasetManifest(BaseModel):
    format: str = DATASET_FORMAT
    format_version: int = DATASET_FORMAT_VERSION
    dataset_version: str
    created: str
    langchain_pad_version: str
    model: str
    seed: int
    settings: dict[str, Any]
    prompt_set: dict[str, Any]
    axes: dict[str, AxisCounts]
    files: dict[str, str] = Field(default_factory=dict)
    wall_seconds: float = 0.0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_jsonl(path: Path, records: Iterable[BaseModel]) -> None:
    """Write atomically: a crash leaves the previous file, never half a dataset."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")
    tmp.replace(path)


def read_samples(path: Path) -> list[SampleRecord]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(SampleRecord.model_validate_json(line))
            except ValueError:
                break  # a torn last line from an interrupted run: resume from here
    return records


def read_dataset(directory: str | Path) -> tuple[DatasetManifest, list[PairRecord]]:
    """Load a dataset and check it is complete and unmodified."""
    root = Path(directory)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{root} has no {MANIFEST_FILE}: not a langchain-pad preference dataset "
            "(make one with `langchain-pad data generate`)."
        )
    manifest = DatasetManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
    if manifest.format != DATASET_FORMAT or manifest.format_version != DATASET_FORMAT_VERSION:
        raise ValueError(
            f"{root} is format {manifest.format} v{manifest.format_version}; this langchain-pad "
            f"reads {DATASET_FORMAT} v{DATASET_FORMAT_VERSION}."
        )
    pairs_path = root / PAIRS_FILE
    expected = manifest.files.get(PAIRS_FILE)
    if expected is not None and sha256_file(pairs_path) != expected:
        raise ValueError(
            f"{pairs_path} does not match the sha256 in its manifest: it was edited or "
            "truncated. Regenerate it with `langchain-pad data generate`."
        )
    pairs = [
        PairRecord.model_validate_json(line)
        for line in pairs_path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return manifest, pairs


def write_manifest(directory: Path, manifest: DatasetManifest) -> None:
    tmp = directory / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest.model_dump(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / MANIFEST_FILE)
