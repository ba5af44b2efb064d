"""Anchor profiles: the reward model's own named poles, and the reward model's id.

A shipped PersRM directory (``persrm.safetensors`` + ``persrm_config.json``) may hold
``anchors.json``: one profile per pole of each axis, each with a description and a few
aliases (other wordings of the same preference)::

    {"format_version": 2,
     "axes": ["expertise", "informativeness", "style"],
     "anchors": [{"name": "expertise:elementary",
                  "description": "Explain things simply, so a child could understand.",
                  "aliases": ["Use plain words, no jargon."],
                  "weights": {"expertise": -1.0}}]}

Format 2 gives weights as strengths in pole units (``langchain_pad.calibration``: -1 / +1
are the calibrated poles). Format 1 gave raw ``w_p``; it is still read, converted with
the directory's ``calibration.json`` or, without one, with its own anchors as the poles.

A store seeds itself with these (user id ``anchor:<name>``), so a preference it has
never seen can be matched to the nearest pole(s). Nothing here imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from langchain_pad.calibration import CALIBRATION_FILE, PoleCalibration, load_calibration
from langchain_pad.profiles.profile import (
    ANCHOR_PREFIX,
    MAX_ABS_WEIGHT,
    PreferenceProfile,
    RewardModelRef,
)

__all__ = [
    "ANCHORS_FILE",
    "Anchor",
    "AnchorSet",
    "anchor_profiles",
    "default_reward_model_ref",
    "load_anchors",
    "reward_model_id",
    "reward_model_ref",
]

ANCHORS_FILE = "anchors.json"
_CONFIG_FILE = "persrm_config.json"
_WEIGHTS_FILE = "persrm.safetensors"


def _resolve(directory: str | Path) -> Path:
    """A path, or ``"default"``: the PersRM shipped inside the package."""
    from langchain_pad.models import resolve_reward_model

    return Path(resolve_reward_model(str(directory)))


def reward_model_id(directory: str | Path) -> str:
    """A stable 16-hex-digit id of a saved PersRM: a hash of its config and weights files.

    The same files give the same id on any machine; retraining changes it.
    """
    path = _resolve(directory)
    digest = hashlib.sha256()
    for name in (_CONFIG_FILE, _WEIGHTS_FILE):
        file = path / name
        if not file.is_file():
            raise FileNotFoundError(
                f"{path} is not a PersRM directory: {name} is missing "
                "(written by PersonalizedRewardModel.save)."
            )
        digest.update(name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def reward_model_ref(directory: str | Path) -> RewardModelRef:
    """The id and axes of the PersRM saved in ``directory`` (reads JSON, loads no weights).

    Hashing the weights takes a few tens of milliseconds, so the answer is remembered
    per directory and state of its files (size and modification time): a retrained
    model in the same directory gets its new id.
    """
    path = _resolve(directory).resolve()
    return _reward_model_ref(str(path), _stamp(path))


def default_reward_model_ref() -> RewardModelRef:
    """The :class:`RewardModelRef` of the PersRM shipped in the package (``"default"``)."""
    from langchain_pad.models import DEFAULT_REWARD_MODEL

    return reward_model_ref(DEFAULT_REWARD_MODEL)


def _stamp(path: Path) -> tuple[tuple[int, int], ...]:
    """Size and modification time of the files the id hashes ((-1, -1): missing)."""
    stamps = []
    for name in (_CONFIG_FILE, _WEIGHTS_FILE):
        try:
            stat = (path / name).stat()
        except OSError:
            stamps.append((-1, -1))
        else:
            stamps.append((stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


@functools.lru_cache(maxsize=64)
def _reward_model_ref(path: str, stamp: tuple[tuple[int, int], ...]) -> RewardModelRef:
    """A pure function of the directory and its files' stamp, hence safe to cache."""
    config = json.loads((Path(path) / _CONFIG_FILE).read_text(encoding="utf-8"))
    return RewardModelRef(id=reward_model_id(path), axes=tuple(config["axes"]))


class Anchor(BaseModel):
    """One pole of one axis (or any named point in weight space)."""

    name: str = Field(min_length=1)
    """``axis:pole``, e.g. ``expertise:elementary``."""
    description: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    weights: dict[str, float]

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: dict[str, float]) -> dict[str, float]:
        for axis, value in weights.items():
            if not math.isfinite(value) or abs(value) > MAX_ABS_WEIGHT:
                raise ValueError(
                    f"anchor weight for {axis!r} is {value}; it must be finite and within "
                    f"+-{MAX_ABS_WEIGHT}"
                )
        return weights

    @property
    def user_id(self) -> str:
        return ANCHOR_PREFIX + self.name


class AnchorSet(BaseModel):
    """The contents of ``anchors.json``."""

    format_version: Literal[1, 2] = 2
    axes: list[str] = Field(min_length=1)
    anchors: list[Anchor] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> AnchorSet:
        names = [a.name for a in self.anchors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"anchor names must be unique, repeated: {duplicates}")
        for anchor in self.anchors:
            if self.format_version == 2 and any(abs(w) > 1.0 for w in anchor.weights.values()):
                raise ValueError(
                    f"anchor {anchor.name!r} has weights {anchor.weights}; format 2 gives "
                    "strengths in pole units, within [-1, 1]"
                )
            unknown = sorted(set(anchor.weights) - set(self.axes))
            if unknown:
                raise ValueError(
                    f"anchor {anchor.name!r} has weights for unknown axes {unknown}; "
                    f"the file's axes are {self.axes}"
                )
        return self

    def profiles(
        self, reward_model: RewardModelRef, calibration: PoleCalibration | None = None
    ) -> list[PreferenceProfile]:
        """One anchor profile per anchor, for this reward model (axes must agree); format-1
        raw weights become strengths with ``calibration`` (default: the anchors' own)."""
        if list(reward_model.axes) != list(self.axes):
            raise ValueError(
                f"anchors.json lists axes {self.axes} but the reward model has "
                f"{list(reward_model.axes)}: the anchors belong to another reward model"
            )
        return [
            PreferenceProfile(
                user_id=anchor.user_id,
                kind="anchor",
                description=anchor.description,
                aliases=list(anchor.aliases),
                weights=self.strengths(anchor, calibration),
                reward_model=reward_model,
            )
            for anchor in self.anchors
        ]

    def strengths(
        self, anchor: Anchor, calibration: PoleCalibration | None = None
    ) -> dict[str, float]:
        """The anchor's weights as strengths in pole units, whatever the file's format."""
        if self.format_version == 2:
            return dict(anchor.weights)
        if calibration is None:
            calibration = PoleCalibration.from_raw_anchors(
                [(a.name, a.weights) for a in self.anchors], self.axes, "anchors.json"
            )
        raw = [anchor.weights.get(axis, 0.0) for axis in self.axes]
        values, _clamped = calibration.to_strengths(raw)
        return dict(zip(self.axes, values, strict=True))


def load_anchors(path: str | Path) -> AnchorSet:
    """Read and validate ``anchors.json`` (a file, or a PersRM directory holding one)."""
    file = _resolve(path)
    if file.is_dir():
        file = file / ANCHORS_FILE
    try:
        return AnchorSet.model_validate_json(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{file} is not a valid anchors file: {exc}") from exc


def anchor_profiles(directory: str | Path) -> list[PreferenceProfile]:
    """The anchor profiles shipped with the PersRM in ``directory`` (none without a file)."""
    path = _resolve(directory)
    if not (path / ANCHORS_FILE).is_file():
        return []
    ref = reward_model_ref(path)
    calibration = None
    if (path / CALIBRATION_FILE).is_file():
        calibration = load_calibration(path, ref.axes)
    return load_anchors(path).profiles(ref, calibration)
