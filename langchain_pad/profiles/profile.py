"""``PreferenceProfile``: one user's preference strengths, and what they belong to.

A profile's ``weights`` are strengths in pole units, one per axis in ``[-1, 1]``
(``langchain_pad.calibration``: -1 / +1 are the axis's calibrated poles for the reward
model, 0 no steering). A profile is only meaningful next to the reward model whose axes
its weights refer to, so it carries that model's id and axis list
(:class:`RewardModelRef`) and is validated against them: unknown axes, a vector of the
wrong length, NaN/inf or strengths outside ``[-1, 1]`` are refused with a message that
says which.

**Profiles saved before pole units** held raw ``w_p`` (and no ``unit``). A store reading
one passes the reward model's calibration as validation context (:func:`stored_context`),
and the profile is converted on read: strengths from the calibrated pole magnitudes, the
original raw values kept in ``migrated_raw_weights`` (nothing is lost; a raw value past
its pole is clamped to it, and the original stays there). The next save writes the new
form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "ANCHOR_PREFIX",
    "MAX_ABS_WEIGHT",
    "MAX_STRENGTH",
    "PreferenceProfile",
    "ProfileVersion",
    "RewardModelRef",
    "stored_context",
]

MAX_ABS_WEIGHT = 20.0
"""Largest raw ``|w_i|`` (the research path, ``raw_weights=``): the reward model's own
bound (kept equal to ``langchain_pad.reward_model.MAX_ABS_WEIGHT``; a test checks it)."""

MAX_STRENGTH = 1.0
"""Profiles hold strengths in ``[-1, 1]`` (``langchain_pad.calibration.MAX_STRENGTH``)."""

Unit = Literal["pole"]

ANCHOR_PREFIX = "anchor:"
"""User ids starting with this belong to the reward model's anchor profiles."""

ProfileKind = Literal["user", "anchor"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class RewardModelRef(BaseModel):
    """Which reward model a profile's weights belong to: its id and its axes, in order."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    """A stable short hash of the PersRM's files (see :func:`reward_model_id`)."""
    axes: tuple[str, ...] = Field(min_length=1)

    @field_validator("axes")
    @classmethod
    def _unique_axes(cls, axes: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(axes)) != len(axes) or any(not a.strip() for a in axes):
            raise ValueError(f"axis names must be unique and non-empty, got {list(axes)}")
        return axes


class PreferenceProfile(BaseModel):
    """A user's preference: ``w_p`` by axis name, plus where it came from.

    ```python
    from langchain_pad.profiles import PreferenceProfile, RewardModelRef

    profile = PreferenceProfile(
        user_id="ana@example.org",
        description="I'm a cardiologist; skip the basics.",
            weights={"expertise": 1.0},  # the expert pole; missing axes are 0
    )  # reward_model: the shipped PersRM's RewardModelRef
    rm = RewardModelRef(id="3f2a9c01d4e5b6a7", axes=("expertise", "informativeness", "style"))
    other = PreferenceProfile(user_id="bo", weights={"style": -0.5}, reward_model=rm)
    ```

    ``weights`` are strengths in pole units (module docstring); they also accept a vector
    in the reward model's axis order. Without
    ``reward_model`` the profile belongs to the PersRM shipped in the package, so a
    profile always says which reward model its weights are for. ``version`` is 0 until
    a store has saved the profile; each save makes a new version.
    """

    model_config = ConfigDict(validate_assignment=True)

    user_id: str
    description: str = ""
    """The user's preference in their own words; what ``match`` compares against."""
    weights: dict[str, float]
    """Strength per axis in ``[-1, 1]``: -1 / +1 the calibrated poles, 0 no steering."""
    unit: Unit = "pole"
    """What ``weights`` are measured in; profiles saved without it held raw ``w_p``."""
    migrated_raw_weights: dict[str, float] | None = None
    """The raw ``w_p`` a profile saved before pole units held (kept when converted)."""
    reward_model: RewardModelRef = Field(default_factory=lambda: _default_ref())
    """The reward model the weights are for; default: the shipped PersRM's."""
    kind: ProfileKind = "user"
    aliases: list[str] = Field(default_factory=list)
    """More descriptions of the same preference, each matchable (anchors use them)."""
    embedding: list[float] | None = None
    """Embedding of ``description`` under the store's embedding model (set by the store)."""
    feedback_count: int = Field(default=0, ge=0)
    version: int = Field(default=0, ge=0)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, user_id: str) -> str:
        if not user_id or not user_id.strip():
            raise ValueError("user_id must be a non-empty string")
        if "\x00" in user_id:
            raise ValueError("user_id must not contain NUL characters")
        return user_id

    @field_validator("embedding")
    @classmethod
    def _finite_embedding(cls, embedding: list[float] | None) -> list[float] | None:
        if embedding is not None:
            if not embedding:
                raise ValueError("embedding must not be empty (use None for no embedding)")
            if not all(math.isfinite(v) for v in embedding):
                raise ValueError("embedding contains NaN or infinite values")
        return embedding

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, aliases: list[str]) -> list[str]:
        if any(not a.strip() for a in aliases):
            raise ValueError("aliases must be non-empty strings")
        return aliases

    @model_validator(mode="before")
    @classmethod
    def _weights_by_axis(cls, values: Any, info: ValidationInfo) -> Any:
        """Accept a vector in the reward model's axis order; fill missing axes with 0;
        convert a stored profile from before pole units (module docstring)."""
        if not isinstance(values, dict):
            return values
        if "reward_model" not in values:
            values = {**values, "reward_model": _default_ref()}
        context = info.context if isinstance(info.context, Mapping) else {}
        if context.get("stored") and "unit" not in values and values.get("weights"):
            values = _from_raw(values, context)
        weights, ref = values.get("weights"), values.get("reward_model")
        axes: Sequence[str] | None = None
        if isinstance(ref, RewardModelRef):
            axes = ref.axes
        elif isinstance(ref, Mapping) and isinstance(ref.get("axes"), Sequence):
            axes = list(ref["axes"])
        if axes is None or weights is None:
            return values
        values = dict(values)
        values["weights"] = normalize_weights(weights, list(axes))
        return values

    @model_validator(mode="after")
    def _anchor_ids(self) -> PreferenceProfile:
        is_anchor_id = self.user_id.startswith(ANCHOR_PREFIX)
        if self.kind == "anchor" and not is_anchor_id:
            raise ValueError(f"anchor profiles need a user_id starting with {ANCHOR_PREFIX!r}")
        if self.kind == "user" and is_anchor_id:
            raise ValueError(
                f"user ids starting with {ANCHOR_PREFIX!r} are reserved for anchor profiles"
            )
        return self

    @property
    def vector(self) -> tuple[float, ...]:
        """``w_p`` in the reward model's axis order."""
        return tuple(self.weights[axis] for axis in self.reward_model.axes)

    @property
    def descriptions(self) -> list[str]:
        """Every matchable text of this profile: the description, then the aliases."""
        texts = [self.description] if self.description.strip() else []
        return texts + [a for a in self.aliases if a not in texts]


def _default_ref() -> RewardModelRef:
    from langchain_pad.profiles.anchors import default_reward_model_ref

    return default_reward_model_ref()


def stored_context(calibrations: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validation context for profiles read back from storage: ``calibrations`` maps
    reward-model ids to their :class:`~langchain_pad.calibration.PoleCalibration`, for
    converting profiles saved before pole units (the shipped PersRM's is always known)."""
    return {"stored": True, "calibrations": dict(calibrations or {})}


def _from_raw(values: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    ref = values["reward_model"]
    ref_id = ref.id if isinstance(ref, RewardModelRef) else dict(ref).get("id")
    axes = list(ref.axes if isinstance(ref, RewardModelRef) else dict(ref).get("axes", []))
    calibration = dict(context.get("calibrations") or {}).get(str(ref_id))
    if calibration is None and ref_id == _default_ref().id:
        from langchain_pad.calibration import load_calibration

        calibration = load_calibration("default", axes)
    if calibration is None:
        raise ValueError(
            f"profile {values.get('user_id')!r} was saved before pole units, with raw weights "
            f"for reward model {ref_id}, whose calibration this store does not have: open the "
            "store with reward_model=<that PersRM's directory> to convert it"
        )
    raw = normalize_weights(values["weights"], axes, limit=MAX_ABS_WEIGHT)
    strengths, _clamped = calibration.to_strengths([raw[a] for a in axes])
    return {
        **values,
        "weights": dict(zip(axes, strengths, strict=True)),
        "unit": "pole",
        "migrated_raw_weights": raw,
    }


def normalize_weights(
    weights: Any, axes: list[str], *, limit: float = MAX_STRENGTH
) -> dict[str, float]:
    """``{axis: float}`` over exactly ``axes``; say precisely what is wrong otherwise."""
    if isinstance(weights, Mapping):
        unknown = sorted(str(k) for k in weights if k not in axes)
        if unknown:
            raise ValueError(
                f"unknown preference axes {unknown}; the reward model's axes are {axes}"
            )
        raw = {axis: weights.get(axis, 0.0) for axis in axes}
    elif isinstance(weights, Sequence) and not isinstance(weights, str):
        if len(weights) != len(axes):
            raise ValueError(
                f"got {len(weights)} weights but the reward model has {len(axes)} axes {axes}; "
                "pass one weight per axis or a dict by axis name"
            )
        raw = dict(zip(axes, weights, strict=True))
    else:
        raise ValueError(f"weights must be a dict by axis name or a list, got {type(weights)}")
    out: dict[str, float] = {}
    for axis, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"weight for axis {axis!r} must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"weight for axis {axis!r} is {number}; weights must be finite")
        if abs(number) > limit:
            raise ValueError(
                f"weight for axis {axis!r} is {number}, outside [-{limit:g}, {limit:g}]: "
                + (
                    "weights are strengths in pole units (-1 and +1 are the axis's "
                    "calibrated poles, 0 is no steering)"
                    if limit == MAX_STRENGTH
                    else "such weights swamp the base model and make decoding degenerate"
                )
            )
        out[axis] = number
    return out


class ProfileVersion(BaseModel):
    """One entry of a profile's history: the profile as saved, and why."""

    user_id: str
    version: int
    reason: str
    """``put``, ``feedback``, ``anchor``, ``import`` or ``delete``."""
    recorded_at: datetime
    profile: PreferenceProfile | None
    """The profile as it was saved in this version; None for a deletion."""
