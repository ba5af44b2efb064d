"""Fakes the contract suite and unit tests use: no model weights anywhere.

:class:`HashingEmbedder` embeds words by hashing, :class:`CountingLearner` refits
deterministically, :func:`fake_persrm` writes a directory that passes for a saved
PersRM (its id and axes can be read; it cannot decode).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from langchain_pad.profiles.profile import PreferenceProfile, RewardModelRef
from langchain_pad.profiles.protocol import FeedbackRecord

__all__ = [
    "ANCHORS",
    "AXES",
    "REWARD_MODEL",
    "CountingLearner",
    "HashingEmbedder",
    "anchor",
    "fake_persrm",
    "user",
]

AXES = ("expertise", "informativeness", "style")
REWARD_MODEL = RewardModelRef(id="test-rm-0001", axes=AXES)


class HashingEmbedder:
    """Bag of words hashed into ``dim`` buckets: same words, same vector; no model."""

    def __init__(self, dim: int = 256, name: str = "hashing-256") -> None:
        self.dim = dim
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.md5(word.encode()).hexdigest()
                for part in (digest[:8], digest[8:16]):  # two buckets: collisions are rare
                    out[i, int(part, 16) % self.dim] += 1.0
            norm = float(np.linalg.norm(out[i]))
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


class CountingLearner:
    """A cheap deterministic refit: ``w[axis 0] = (number of pairs) / 1000`` (a strength:
    up to 1,000 pairs stay within the pole)."""

    def __init__(self, reward_model: RewardModelRef = REWARD_MODEL, fail: bool = False) -> None:
        self._ref = reward_model
        self.fail = fail
        self.calls: list[int] = []

    @property
    def reward_model(self) -> RewardModelRef:
        return self._ref

    def features(self, prompt: str, chosen: str, rejected: str) -> list[float] | None:
        return [float(len(chosen) - len(rejected))] + [0.0] * (len(self._ref.axes) - 1)

    def refit(
        self, profile: PreferenceProfile, feedback: Sequence[FeedbackRecord]
    ) -> Mapping[str, float]:
        self.calls.append(len(feedback))
        if self.fail:
            raise RuntimeError("refit failed")
        weights = dict(profile.weights)
        weights[self._ref.axes[0]] = min(1.0, len(feedback) / 1000)
        return weights


def user(user_id: str, description: str = "", **weights: float) -> PreferenceProfile:
    return PreferenceProfile(
        user_id=user_id, description=description, weights=weights, reward_model=REWARD_MODEL
    )


def anchor(name: str, description: str, aliases: Sequence[str] = (), **weights: float) -> Any:
    return PreferenceProfile(
        user_id=f"anchor:{name}",
        kind="anchor",
        description=description,
        aliases=list(aliases),
        weights=weights,
        reward_model=REWARD_MODEL,
    )


ANCHORS = (
    anchor(
        "expertise:elementary", "explain simply for a child", ["plain words please"], expertise=-1.0
    ),
    anchor("expertise:expert", "technical depth for a specialist", expertise=1.0),
    anchor("informativeness:concise", "short brief answers", informativeness=-1.0),
    anchor("style:warm", "friendly warm kind tone", style=1.0),
)


def fake_persrm(
    directory: Path, anchors: Sequence[PreferenceProfile] = (), weights: bytes = b"weights"
) -> Path:
    """A directory with what a PersRM's id, axes, anchors and calibration are read from
    (no model).

    ``anchors`` (of any reward model with the axes :data:`AXES`) become its
    ``anchors.json``; every pole's calibrated raw magnitude is 2.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "persrm_config.json").write_text(json.dumps({"axes": list(AXES)}))
    (directory / "persrm.safetensors").write_bytes(weights)
    if anchors:
        entries = [
            {
                "name": a.user_id.removeprefix("anchor:"),
                "description": a.description,
                "aliases": list(a.aliases),
                "weights": {k: v for k, v in a.weights.items() if v},
            }
            for a in anchors
        ]
        data = {"format_version": 2, "axes": list(AXES), "anchors": entries}
        (directory / "anchors.json").write_text(json.dumps(data))
    calibration = {
        "format_version": 1,
        "unit": "pole",
        "axes": {axis: {"low": 2.0, "high": 2.0} for axis in AXES},
    }
    (directory / "calibration.json").write_text(json.dumps(calibration))
    return directory
