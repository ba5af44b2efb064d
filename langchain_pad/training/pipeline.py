"""`langchain-pad train`: a preference dataset in, a shippable PersRM directory out.

Steps: stage-1 training on the dataset's train split, held-out pair accuracy per axis,
dropping axes that did not learn (they are reported, never shipped as if they worked),
saving, re-measuring on the *saved* file, calibrating each pole's anchor weight
(``calibration.py``), and writing the anchor profiles, metrics and a model card
(``model_card.py``) beside the weights. ``recalibrate_anchors`` re-runs only the
calibration on a trained PersRM.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from langchain_pad.axes import PreferenceAxis, axes_by_name
from langchain_pad.datagen.dataset import PairRecord, read_dataset
from langchain_pad.guard import DEFAULT_PLAUSIBILITY, DEFAULT_REPETITION_PENALTY
from langchain_pad.training.calibration import (
    calibrate_anchors,
    pick_magnitude,
    pole_wordings,
    write_anchors,
)
from langchain_pad.training.model_card import CARD_FILE, model_card, write_card
from langchain_pad.training.pairs import PreferencePair, TokenizedPair, tokenize_pair

if TYPE_CHECKING:
    from langchain_pad.models import LoadedModel
    from langchain_pad.reward_model import PersonalizedRewardModel

# calibration and the model card have their own modules; their names stay importable here
__all__ = [
    "ANCHORS_FILE",
    "CARD_FILE",
    "METRICS_FILE",
    "AxisReport",
    "TrainSettings",
    "calibrate_anchors",
    "model_card",
    "pair_accuracy",
    "pick_magnitude",
    "pole_wordings",
    "recalibrate_anchors",
    "train_reward_model",
]

ANCHORS_FILE = "anchors.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 2
    learning_rate: float = 2e-5
    beta: float = 0.1
    adapted_layers: int = 4
    seed: int = 0
    max_train_pairs_per_axis: int | None = None
    min_heldout_accuracy: float = 0.75
    """An axis ships only if its held-out pair accuracy reaches this."""
    min_heldout_pairs: int = 12
    """Fewer held-out pairs than this cannot show an axis works: it is not shipped."""
    calibration_prompts: int = 16
    calibration_magnitudes: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
    calibration_new_tokens: int | None = None
    """Answer length for calibration; None reads each axis at its ``eval_new_tokens``."""
    max_perplexity_ratio: float = 1.3
    """Calibration rejects anchor weights whose answers are this much less fluent (the
    median over the calibration prompts of the perplexity ratio to plain greedy)."""
    max_worst_perplexity_ratio: float = 2.0
    """... and those whose least fluent answer is this much less fluent than greedy's."""
    calibration_repetition_penalty: float = DEFAULT_REPETITION_PENALTY
    """The degeneration guard calibration decodes under (base and PAD rows alike): the
    library's default, so a pole means what users get."""
    calibration_plausibility: float = DEFAULT_PLAUSIBILITY

    def __post_init__(self) -> None:
        # a bar of 0 or below (or NaN) would reject every weight and fall back silently
        for name in ("max_perplexity_ratio", "max_worst_perplexity_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number > 0, got {value!r}.")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"{name} must be a finite number > 0 (a perplexity ratio to plain "
                    f"greedy decoding; 1.0 = as fluent), got {value!r}."
                )


@dataclass
class AxisReport:
    name: str
    low: str
    high: str
    train_pairs: int
    heldout_pairs: int
    train_accuracy: float
    heldout_accuracy: float
    shipped: bool
    reason: str
    anchor_magnitude: float | None = None
    calibration: list[dict[str, Any]] = field(default_factory=list)


def pair_accuracy(
    rm: PersonalizedRewardModel,
    pairs: Sequence[TokenizedPair],
    *,
    description: str | None = None,
) -> dict[int, tuple[int, int]]:
    """Per axis index: (pairs whose chosen answer gets the larger feature sum, pairs)."""
    from tqdm.auto import tqdm

    totals: dict[int, list[int]] = {}
    for pair in tqdm(pairs, desc=description, unit="pair", disable=description is None):
        assert pair.axis is not None
        features = rm.responses_features(
            list(pair.prompt_ids), [list(pair.chosen_ids), list(pair.rejected_ids)]
        )
        won = bool(features[0, pair.axis] > features[1, pair.axis])
        entry = totals.setdefault(pair.axis, [0, 0])
        entry[0] += int(won)
        entry[1] += 1
    return {axis: (wins, n) for axis, (wins, n) in totals.items()}


def _eos_id(loaded: LoadedModel) -> int:
    eos = loaded.tokenizer.eos_token_id
    return int(eos) if eos in loaded.eos_token_ids else min(loaded.eos_token_ids)


def _tokenize(
    loaded: LoadedModel, records: Sequence[PairRecord], axes: list[str]
) -> list[TokenizedPair]:
    eos = _eos_id(loaded)
    return [
        tokenize_pair(
            loaded.tokenizer,
            PreferencePair(
                r.prompt, r.chosen, r.rejected, r.axis, r.chosen_complete, r.rejected_complete
            ),
            axes,
            eos_token_id=eos,
        )
        for r in records
    ]


def _select_train(
    records: list[PairRecord], axes: list[str], settings: TrainSettings
) -> list[PairRecord]:
    rng = random.Random(settings.seed)
    chosen: list[PairRecord] = []
    for axis in axes:
        pool = [r for r in records if r.axis == axis and r.split == "train"]
        if settings.max_train_pairs_per_axis is not None:
            pool = sorted(pool, key=lambda r: r.id)
            rng.shuffle(pool)
            pool = pool[: settings.max_train_pairs_per_axis]
        chosen.extend(pool)
    return chosen


def train_reward_model(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    settings: TrainSettings | None = None,
    model_name: str | None = None,
    checkpoint_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train, evaluate, select axes, save, calibrate anchors; return the metrics written."""
    from langchain_pad.models import load_model
    from langchain_pad.reward_model import PersonalizedRewardModel
    from langchain_pad.training.stage1 import Stage1Config, train_stage1

    settings = settings or TrainSettings()
    started = time.perf_counter()
    manifest, records = read_dataset(data_dir)
    loaded = load_model(model_name or manifest.model)
    axis_names = [name for name, counts in manifest.axes.items() if counts.pairs_kept > 0]
    if not axis_names:
        raise ValueError(f"{data_dir} has no kept pairs on any axis: nothing to train.")
    axes = axes_by_name(axis_names)
    torch.manual_seed(settings.seed)
    rm = PersonalizedRewardModel(
        loaded.model,
        axis_names,
        beta=settings.beta,
        adapted_layers=settings.adapted_layers,
        backbone=manifest.model,
        axis_descriptions={a.name: _axis_description(a) for a in axes},
    )
    train_records = _select_train(records, axis_names, settings)
    heldout_records = [r for r in records if r.split == "heldout" and r.axis in axis_names]
    train_pairs = _tokenize(loaded, train_records, axis_names)
    heldout_pairs = _tokenize(loaded, heldout_records, axis_names)

    stage1 = train_stage1(
        rm,
        train_pairs,
        Stage1Config(
            epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            seed=settings.seed,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        ),
        show_progress=show_progress,
    )

    def shown(label: str) -> str | None:
        return label if show_progress else None

    train_acc = stage1.axis_accuracy  # measured by stage 1 on its own frozen inputs
    heldout_acc = pair_accuracy(rm, heldout_pairs, description=shown("held-out accuracy"))

    reports: list[AxisReport] = []
    for index, axis in enumerate(axes):
        wins, n = heldout_acc.get(index, (0, 0))
        accuracy = wins / n if n else 0.0
        t_wins, t_n = train_acc.get(index, (0, 0))
        if n < settings.min_heldout_pairs:
            shipped, reason = False, f"only {n} held-out pairs: too few to show it works"
        elif accuracy < settings.min_heldout_accuracy:
            shipped = False
            reason = f"held-out accuracy {accuracy:.2f} < {settings.min_heldout_accuracy:.2f}"
        else:
            shipped, reason = True, "held-out accuracy reaches the bar"
        reports.append(
            AxisReport(
                axis.name,
                axis.low.name,
                axis.high.name,
                t_n,
                n,
                round(t_wins / t_n, 4) if t_n else 0.0,
                round(accuracy, 4),
                shipped,
                reason,
            )
        )
    shipped_axes = [r.name for r in reports if r.shipped]
    if not shipped_axes:
        raise RuntimeError(
            "no axis reached the held-out accuracy bar; nothing to ship: "
            + "; ".join(f"{r.name}: {r.reason}" for r in reports)
        )

    out = Path(out_dir)
    rm.select_axes(shipped_axes)
    rm.save(out, dtype=torch.bfloat16)
    saved = PersonalizedRewardModel.load(out, loaded.model)
    # the figures that ship are those of the saved (bfloat16) file, not the training copy
    saved_pairs = _tokenize(
        loaded, [r for r in heldout_records if r.axis in shipped_axes], shipped_axes
    )
    measured = pair_accuracy(saved, saved_pairs, description=shown("saved file, held-out"))
    for index, (wins, n) in measured.items():
        report = next(r for r in reports if r.name == shipped_axes[index])
        report.heldout_accuracy = round(wins / n, 4)

    calibration_started = time.perf_counter()
    anchors = calibrate_anchors(
        loaded,
        saved,
        axes_by_name(shipped_axes),
        reports,
        _calibration_prompts(train_records, settings),
        settings,
        show_progress=show_progress,
    )
    calibration_seconds = time.perf_counter() - calibration_started
    write_anchors(out, anchors)

    metrics: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "path": str(data_dir),
            "version": manifest.dataset_version,
            "pairs_sha256": manifest.files.get("pairs.jsonl"),
        },
        "base_model": manifest.model,
        "settings": asdict(settings),
        "stage1": {
            "epoch_losses": [round(x, 5) for x in stage1.epoch_losses],
            "train_accuracy": round(stage1.train_accuracy, 4),
            "seconds": round(stage1.seconds, 1),
        },
        "axes": [asdict(r) for r in reports],
        "shipped_axes": shipped_axes,
        "machine": {
            "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "calibration_seconds": round(calibration_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_card(out, metrics, anchors, manifest.model_dump())
    return metrics


def recalibrate_anchors(
    reward_model_dir: str | Path,
    data_dir: str | Path,
    *,
    settings: TrainSettings | None = None,
    model_name: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Re-pick the anchor weights of a trained PersRM without training it again.

    Uses the same calibration prompts ``train`` would (the dataset's training prompts,
    sampled with the training seed); rewrites ``anchors.json`` and the calibration parts
    of ``metrics.json`` and the model card. ``settings`` carries the calibration
    options; the training options recorded in ``metrics.json`` are kept.
    """
    from langchain_pad.models import load_model
    from langchain_pad.reward_model import PersonalizedRewardModel

    out = Path(reward_model_dir)
    metrics_path = out / METRICS_FILE
    if not metrics_path.is_file():
        raise ValueError(
            f"{out} has no {METRICS_FILE}: recalibration needs a PersRM written by "
            "`langchain-pad train`."
        )
    metrics: dict[str, Any] = json.loads(metrics_path.read_text())
    calibration = settings or TrainSettings()
    recorded = {
        k: v for k, v in metrics["settings"].items() if k in TrainSettings.__dataclass_fields__
    }
    merged = replace(
        TrainSettings(**recorded),
        calibration_prompts=calibration.calibration_prompts,
        calibration_magnitudes=calibration.calibration_magnitudes,
        calibration_new_tokens=calibration.calibration_new_tokens,
        max_perplexity_ratio=calibration.max_perplexity_ratio,
        max_worst_perplexity_ratio=calibration.max_worst_perplexity_ratio,
        calibration_repetition_penalty=calibration.calibration_repetition_penalty,
        calibration_plausibility=calibration.calibration_plausibility,
    )
    manifest, records = read_dataset(data_dir)
    if metrics["dataset"].get("pairs_sha256") != manifest.files.get("pairs.jsonl"):
        raise ValueError(
            f"{data_dir} is not the dataset {out} was trained on (pairs.jsonl sha256 "
            "differs): calibrate on the training prompts of the model's own dataset."
        )
    axis_names = [name for name, counts in manifest.axes.items() if counts.pairs_kept > 0]
    train_records = _select_train(records, axis_names, merged)
    loaded = load_model(model_name or metrics["base_model"])
    rm = PersonalizedRewardModel.load(out, loaded.model)
    reports = [
        AxisReport(**{**a, "calibration": [], "anchor_magnitude": None}) for a in metrics["axes"]
    ]
    started = time.perf_counter()
    anchors = calibrate_anchors(
        loaded,
        rm,
        axes_by_name(rm.axes),
        reports,
        _calibration_prompts(train_records, merged),
        merged,
        show_progress=show_progress,
    )
    write_anchors(out, anchors)
    metrics["settings"] = asdict(merged)
    metrics["axes"] = [asdict(r) for r in reports]
    metrics["calibration_seconds"] = round(time.perf_counter() - started, 1)
    metrics["recalibrated"] = datetime.now(UTC).isoformat(timespec="seconds")
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    write_card(out, metrics, anchors, manifest.model_dump())
    return metrics


def _calibration_prompts(train_records: list[PairRecord], settings: TrainSettings) -> list[str]:
    train_prompts = sorted({r.prompt for r in train_records})
    return random.Random(settings.seed).sample(
        train_prompts, min(settings.calibration_prompts, len(train_prompts))
    )


def _axis_description(axis: PreferenceAxis) -> dict[str, str]:
    return {
        "low": axis.low.name,
        "high": axis.high.name,
        "low_description": axis.low.description,
        "high_description": axis.high.description,
        "judge": axis.judge,
    }
