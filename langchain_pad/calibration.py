"""Strengths in pole units: what ``-1``, ``0`` and ``+1`` on an axis mean for one PersRM.

A user gives a preference as a strength per axis in ``[-1, 1]``: ``-1`` is the axis's
low pole (``elementary``, ``concise``), ``+1`` its high pole (``expert``, ``thorough``),
``0`` no steering. The raw ``w_p`` that decoding multiplies into the reward is another
matter: which magnitude reaches a pole differs per axis, per pole and per trained PersRM
(the shipped one, calibrated under the degeneration guard: 6 for ``elementary``, 2 for
``expert``, 4 for ``concise`` and ``thorough``). Calibration measures
that magnitude by decoding (``langchain_pad.training.calibration``) and each PersRM
directory records it in ``calibration.json``::

    {"format_version": 1, "unit": "pole",
     "axes": {"expertise": {"low": 6.0, "high": 2.0},
              "informativeness": {"low": 4.0, "high": 4.0}},
     "guard": {"repetition_penalty": 1.15, "plausibility": 0.1}}

A strength maps linearly onto its pole's magnitude (``+0.5`` is half the high pole's
raw weight), so a PersRM trained by a user means the same as the shipped one. The file
is not part of the PersRM's id: recalibrating changes how a pole is reached, not which
pole a stored profile asks for. A directory without the file but with format-1
``anchors.json`` (raw anchor weights) is read from its anchors. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CALIBRATION_FILE",
    "MAX_STRENGTH",
    "CalibrationError",
    "PoleCalibration",
    "load_calibration",
    "write_calibration",
]

CALIBRATION_FILE = "calibration.json"
MAX_STRENGTH = 1.0
"""Strengths live in ``[-1, 1]``: the calibrated poles are the strongest fluent steering."""


class CalibrationError(ValueError):
    """A PersRM directory has no usable calibration for the axes asked about."""


@dataclass(frozen=True)
class PoleCalibration:
    """Per axis, the raw ``w_p`` magnitude of its low and of its high pole."""

    axes: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    guard: Mapping[str, float] = field(default_factory=dict)
    """The degeneration guard the poles were measured under (recorded, for the card)."""
    source: str = ""
    """Where the magnitudes came from (a file path), for error messages."""

    def __post_init__(self) -> None:
        if not (len(self.axes) == len(self.low) == len(self.high)):
            raise CalibrationError(
                f"calibration {self.source or ''}: {len(self.axes)} axes but "
                f"{len(self.low)} low and {len(self.high)} high magnitudes."
            )
        for axis, low, high in zip(self.axes, self.low, self.high, strict=True):
            for pole, value in (("low", low), ("high", high)):
                if not (math.isfinite(value) and value > 0):
                    raise CalibrationError(
                        f"calibration {self.source}: axis {axis!r} {pole} pole has magnitude "
                        f"{value!r}; it must be a finite number > 0 (re-run "
                        "`langchain-pad calibrate` for this PersRM)."
                    )

    def scale(self, axis: str) -> tuple[float, float]:
        """``(low, high)`` raw magnitudes of ``axis``."""
        i = self.axes.index(axis)
        return self.low[i], self.high[i]

    def to_raw(self, strengths: Sequence[float]) -> tuple[float, ...]:
        """Raw ``w_p`` for strengths in axis order (checked by the caller to be in range)."""
        return tuple(
            s * (high if s > 0 else low)
            for s, low, high in zip(strengths, self.low, self.high, strict=True)
        )

    def to_strengths(self, raw: Sequence[float]) -> tuple[tuple[float, ...], bool]:
        """Strengths for raw ``w_p``, clamped to ``[-1, 1]``; and whether any was clamped."""
        out: list[float] = []
        clamped = False
        for w, low, high in zip(raw, self.low, self.high, strict=True):
            s = w / (high if w > 0 else low)
            if abs(s) > MAX_STRENGTH:
                clamped = True
                s = math.copysign(MAX_STRENGTH, s)
            out.append(s)
        return tuple(out), clamped

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "unit": "pole",
            "axes": {
                a: {"low": lo, "high": hi}
                for a, lo, hi in zip(self.axes, self.low, self.high, strict=True)
            },
            "guard": dict(self.guard),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], axes: Sequence[str], *, source: str = ""
    ) -> PoleCalibration:
        by_axis = data.get("axes")
        if data.get("format_version") != 1 or not isinstance(by_axis, Mapping):
            raise CalibrationError(
                f"{source} is not a calibration file (format_version 1 with an 'axes' object)."
            )
        missing = [a for a in axes if a not in by_axis]
        if missing:
            raise CalibrationError(
                f"{source} has no calibration for axes {missing} (it has {sorted(by_axis)}); "
                "re-run `langchain-pad calibrate` for this PersRM."
            )
        try:
            low = tuple(float(by_axis[a]["low"]) for a in axes)
            high = tuple(float(by_axis[a]["high"]) for a in axes)
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(
                f"{source}: each axis needs numbers 'low' and 'high' ({exc})."
            ) from exc
        guard = {str(k): float(v) for k, v in dict(data.get("guard") or {}).items()}
        return cls(tuple(axes), low, high, guard, source)

    @classmethod
    def uniform(cls, axes: Sequence[str], magnitude: float) -> PoleCalibration:
        """Every pole at the same raw magnitude (tests, and PersRMs not yet calibrated
        by decoding, where one magnitude is a deliberate choice)."""
        n = len(axes)
        return cls(tuple(axes), (float(magnitude),) * n, (float(magnitude),) * n)

    @classmethod
    def from_raw_anchors(
        cls, anchors: Sequence[tuple[str, Mapping[str, float]]], axes: Sequence[str], source: str
    ) -> PoleCalibration:
        """From format-1 anchors (raw weights): each pole's anchor weight is its magnitude."""
        low = dict.fromkeys(axes, 0.0)
        high = dict.fromkeys(axes, 0.0)
        for _name, weights in anchors:
            for axis, w in weights.items():
                if axis in low and w < 0:
                    low[axis] = max(low[axis], -w)
                elif axis in high and w > 0:
                    high[axis] = max(high[axis], w)
        for axis in axes:  # a pole no anchor names converts nothing: any magnitude will do
            low[axis] = low[axis] or high[axis] or 1.0
            high[axis] = high[axis] or low[axis]
        return cls(
            tuple(axes), tuple(low[a] for a in axes), tuple(high[a] for a in axes), {}, source
        )


def load_calibration(directory: str | Path, axes: Sequence[str]) -> PoleCalibration:
    """The calibration of the PersRM in ``directory`` (``"default"``: the shipped one)."""
    from langchain_pad.models import resolve_reward_model

    path = Path(resolve_reward_model(str(directory)))
    file = path / CALIBRATION_FILE
    if file.is_file():
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"cannot read {file}: {exc}") from exc
        return PoleCalibration.from_dict(data, axes, source=str(file))
    anchors_file = path / "anchors.json"
    if anchors_file.is_file():
        data = json.loads(anchors_file.read_text(encoding="utf-8"))
        if data.get("format_version") == 1:
            pairs = [(a["name"], a["weights"]) for a in data.get("anchors", [])]
            return PoleCalibration.from_raw_anchors(pairs, axes, str(anchors_file))
    raise CalibrationError(
        f"the PersRM in {path} has no {CALIBRATION_FILE}, so a strength in [-1, 1] has no "
        "meaning for it yet: run `langchain-pad calibrate --reward-model "
        f"{path}` (it decodes and writes the file), or pass raw_weights= to steer with raw "
        "w_p values."
    )


def write_calibration(directory: str | Path, calibration: PoleCalibration) -> Path:
    """Write ``calibration.json`` into a PersRM directory (atomically: a reader never sees
    half a file); returns its path."""
    import os
    import tempfile

    path = Path(directory) / CALIBRATION_FILE
    text = json.dumps(calibration.to_dict(), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
