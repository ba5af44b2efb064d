"""The one place that decides whose preference steers a call, and checks its weights.

The chat model, the server and the LangGraph adapter all ask this module, so the
precedence is written once:

1. **per call beats per instance**: when a call names any of ``weights``, ``user_id``
   or ``preference`` (as a keyword, through ``.bind`` or LangChain's ``configurable``),
   the instance's defaults for all three are set aside;
2. within the chosen layer, explicit ``raw_weights`` > explicit ``weights`` > the
   ``user_id``'s stored profile > the ``preference`` text matched against known
   profiles > no personalization.

**Units.** ``weights``, profiles and matches are strengths in pole units, one per axis
in ``[-1, 1]`` (``langchain_pad.calibration``: -1 / +1 the axis's calibrated poles for
the reward model in use, 0 no steering); the resolver turns them into the raw ``w_p``
decoding uses with that PersRM's calibration. ``raw_weights`` is the research path: raw
``w_p``, used as given (within +-:data:`MAX_ABS_WEIGHT`).

A profile is only used with the reward model it was learned for: its weights are
coordinates on that PersRM's axes, so another PersRM would read them as something
else. A mismatch is refused with :class:`ProfileMismatchError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from langchain_pad.calibration import PoleCalibration
    from langchain_pad.profiles import PreferenceProfile, ProfileStore

__all__ = [
    "MAX_ABS_WEIGHT",
    "MAX_STRENGTH",
    "PreferenceQuery",
    "PreferenceResolver",
    "ProfileMismatchError",
    "ResolvedPreference",
    "UnknownUser",
    "check_weights",
]

MAX_ABS_WEIGHT = 20.0
"""Largest raw ``|w_i|`` (``raw_weights``): far past the calibrated poles, where decoding
degenerates."""

MAX_STRENGTH = 1.0
"""Strengths (``weights``) live in ``[-1, 1]``: -1 / +1 are the calibrated poles."""

UnknownUser = Literal["error", "fallback"]
"""What a ``user_id`` without a stored profile does: raise, or fall back to
``preference`` (then to no personalization)."""

Source = Literal["raw_weights", "weights", "user_id", "preference", "none"]


class ProfileMismatchError(ValueError):
    """A stored profile belongs to another reward model than the one decoding the call."""


def check_weights(
    weights: object, axes: Sequence[str], *, name: str = "weights", limit: float = MAX_STRENGTH
) -> tuple[float, ...]:
    """Strengths (or, with ``limit=MAX_ABS_WEIGHT``, raw ``w_p``) in ``axes`` order from
    ``{"axis": number}`` or one number per axis.

    Every way a user gives weights (chat model, server, profiles) goes through here,
    so a bad value gets the same message that names the parameter and the accepted form.
    """
    what = "numbers in [-1, 1]" if limit == MAX_STRENGTH else "numbers"
    accepted = (
        f"pass {name} as {{axis: number}} with axes from {list(axes)}, or a list of "
        f"{len(axes)} {what} in that order"
    )
    if isinstance(weights, Mapping):
        unknown = sorted(str(k) for k in weights if k not in axes)
        if unknown:
            raise ValueError(
                f"{name}: unknown preference axes {unknown}; this reward model's axes are "
                f"{list(axes)}."
            )
        values = [weights.get(axis, 0.0) for axis in axes]
    elif isinstance(weights, list | tuple):
        if len(weights) != len(axes):
            raise ValueError(
                f"{name}: got {len(weights)} weights but the reward model has {len(axes)} "
                f"axes {list(axes)}; {accepted}."
            )
        values = list(weights)
    else:
        raise ValueError(f"{name}: got {weights!r} ({type(weights).__name__}); {accepted}.")
    vector: list[float] = []
    for axis, value in zip(axes, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}[{axis!r}] must be a number, got {value!r}; {accepted}.")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(
                f"{name}[{axis!r}] must be a finite number, got {value!r}; {accepted}."
            )
        if abs(number) > limit:
            if limit == MAX_STRENGTH:
                raise ValueError(
                    f"{name}[{axis!r}] must be a strength in [-1, 1], got {value!r}: -1 and "
                    "+1 are the axis's calibrated poles, 0 is no steering (raw w_p values "
                    "go in raw_weights=)."
                )
            raise ValueError(
                f"{name}[{axis!r}] must be finite and within +-{limit:g}, got "
                f"{value!r}; large weights make decoding degenerate (see the model card)."
            )
        vector.append(number)
    return tuple(vector)


@dataclass(frozen=True)
class PreferenceQuery:
    """What one layer (a call, or an instance's defaults) asked for."""

    weights: Mapping[str, float] | Sequence[float] | None = None
    """Strengths in pole units."""
    user_id: str | None = None
    preference: str | None = None
    raw_weights: Mapping[str, float] | Sequence[float] | None = None
    """Raw ``w_p`` (research): used as given, no calibration."""

    def __post_init__(self) -> None:
        if self.user_id is not None and (not isinstance(self.user_id, str) or not self.user_id):
            raise ValueError(f"user_id must be a non-empty string, got {self.user_id!r}.")
        if self.preference is not None and not isinstance(self.preference, str):
            raise ValueError(f"preference must be a string, got {self.preference!r}.")

    @property
    def empty(self) -> bool:
        return (
            self.weights is None
            and self.raw_weights is None
            and self.user_id is None
            and not self.preference
        )

    def over(self, defaults: PreferenceQuery) -> PreferenceQuery:
        """This layer if it names anything, else ``defaults`` (per call beats per instance)."""
        return defaults if self.empty else self


@dataclass(frozen=True)
class ResolvedPreference:
    """The ``w_p`` a call decodes with, and where it came from."""

    weights: tuple[float, ...] | None
    """Raw ``w_p`` in the reward model's axis order, what decoding uses; None: plain."""
    source: Source
    metadata: dict[str, Any] | None = None
    """What ``response_metadata["pad_profile"]`` shows (None when nothing was looked up)."""
    strengths: tuple[float, ...] | None = None
    """The same preference in pole units (None for ``raw_weights`` and plain decoding)."""


class PreferenceResolver:
    """Turns a :class:`PreferenceQuery` into ``w_p`` for one reward model.

    ``store`` resolves ``user_id`` and ``preference``; without one, ``preference`` is
    matched against the reward model's own anchor poles (``anchors``), and a
    ``user_id`` is an error. ``reveal_matched_users=False`` keeps other users' ids,
    versions and similarities out of the metadata of a ``preference`` match (anchors
    stay named): the setting for a process that answers many users.
    """

    def __init__(
        self,
        store: ProfileStore | None = None,
        *,
        unknown_user: UnknownUser = "error",
        reveal_matched_users: bool = True,
    ) -> None:
        if unknown_user not in ("error", "fallback"):
            raise ValueError(f"unknown_user must be 'error' or 'fallback', got {unknown_user!r}.")
        self.store = store
        self.unknown_user: UnknownUser = unknown_user
        self.reveal_matched_users = reveal_matched_users

    def resolve(
        self,
        query: PreferenceQuery,
        *,
        axes: Sequence[str],
        reward_model_id: str,
        anchors: Callable[[], ProfileStore] | None = None,
        calibration: Callable[[], PoleCalibration] | PoleCalibration | None = None,
    ) -> ResolvedPreference:
        """``w_p`` for ``query`` on the reward model with these ``axes`` and id;
        ``calibration`` (or a function that loads it: only strengths need it) maps
        strengths onto that PersRM's raw ``w_p``."""
        named = query.user_id is not None or bool(query.preference)
        if query.raw_weights is not None:
            vector = check_weights(
                query.raw_weights, axes, name="raw_weights", limit=MAX_ABS_WEIGHT
            )
            info = {"source": "raw_weights"} if named or query.weights is not None else None
            return ResolvedPreference(vector, "raw_weights", info)
        resolved = self._strengths(query, axes, reward_model_id, anchors)
        if resolved.strengths is None:
            return resolved
        if calibration is None:
            from langchain_pad.calibration import CalibrationError

            raise CalibrationError(
                "strengths need the reward model's calibration, and none was given; pass "
                "raw_weights= to steer with raw w_p values."
            )
        table = calibration() if callable(calibration) else calibration
        raw = table.to_raw(resolved.strengths)
        return ResolvedPreference(raw, resolved.source, resolved.metadata, resolved.strengths)

    def _strengths(
        self,
        query: PreferenceQuery,
        axes: Sequence[str],
        reward_model_id: str,
        anchors: Callable[[], ProfileStore] | None,
    ) -> ResolvedPreference:
        """The query's preference in pole units (in ``strengths``; ``weights`` unset)."""
        if query.weights is not None:
            vector = check_weights(query.weights, axes)
            named = query.user_id is not None or bool(query.preference)
            info = {"source": "weights"} if named else None
            return ResolvedPreference(None, "weights", info, vector)
        if query.empty:
            return ResolvedPreference(None, "none")
        unknown: dict[str, Any] = {}
        if query.user_id is not None:
            found = self._profile(query.user_id)
            if found is not None:
                self._check_reward_model(found, reward_model_id, how=f"user {found.user_id!r}")
                return ResolvedPreference(
                    None,
                    "user_id",
                    {
                        "source": "user_id",
                        "user_id": found.user_id,
                        "version": found.version,
                        "reward_model_id": found.reward_model.id,
                    },
                    check_weights(dict(found.weights), axes, name=f"profile {found.user_id!r}"),
                )
            unknown = {"unknown_user_id": query.user_id}
        if not query.preference:
            return ResolvedPreference(None, "none", {"source": "none", **unknown})
        return self._match(query.preference, axes, reward_model_id, anchors, unknown)

    # ------------------------------------------------------------------ steps

    def _profile(self, user_id: str) -> PreferenceProfile | None:
        if self.store is None:
            raise ValueError(
                "user_id= is looked up in a preference-profile store, but none is "
                "configured: pass profile_store=SQLiteProfileStore() (or another "
                "ProfileStore), or give weights= or preference= instead."
            )
        found = self.store.get(user_id)
        if found is None and self.unknown_user == "error":
            from langchain_pad.profiles import UnknownProfileError

            raise UnknownProfileError(
                f"no preference profile is stored for user {user_id!r}: create one "
                "(store.put, store.record_feedback or `langchain-pad profiles add`), or "
                "set unknown_user='fallback' to use preference= or no personalization."
            )
        return found

    def _match(
        self,
        text: str,
        axes: Sequence[str],
        reward_model_id: str,
        anchors: Callable[[], ProfileStore] | None,
        unknown: dict[str, Any],
    ) -> ResolvedPreference:
        store = self.store if self.store is not None else (anchors() if anchors else None)
        if store is None:
            raise ValueError(
                "preference= is matched against known preference profiles, but there is no "
                "profile store and the reward model has no anchors: pass profile_store=."
            )
        result = store.match(text)
        by_id = {m.profile.user_id: m.profile for m in result.matches}
        for user_id in result.used:
            profile = by_id.get(user_id)
            if profile is not None:
                self._check_reward_model(profile, reward_model_id, how="the matched profile")
        matches = [self._describe(m) for m in result.matches]
        used = [u for u in result.used if self.reveal_matched_users or _is_anchor(u)]
        info: dict[str, Any] = {
            "source": "preference" if result.matched else "none",
            "preference": text,
            "matches": [m for m in matches if m is not None],
            "used": used,
            **({"conflicts": list(result.conflicts)} if result.conflicts else {}),
            **unknown,
        }
        vector = None if result.weights is None else check_weights(result.weights, axes)
        return ResolvedPreference(None, "preference" if vector else "none", info, vector)

    def _describe(self, match: Any) -> dict[str, Any] | None:
        if not self.reveal_matched_users and not _is_anchor(match.profile.user_id):
            return None
        return {
            "user_id": match.profile.user_id,
            "version": match.profile.version,
            "similarity": round(match.similarity, 4),
            "score": round(match.score, 4),
            **({} if match.probability is None else {"probability": round(match.probability, 4)}),
        }

    @staticmethod
    def _check_reward_model(profile: PreferenceProfile, reward_model_id: str, *, how: str) -> None:
        if profile.reward_model.id == reward_model_id:
            return
        raise ProfileMismatchError(
            f"{how} (profile {profile.user_id!r}, version {profile.version}) was learned for "
            f"reward model {profile.reward_model.id} but this call decodes with "
            f"{reward_model_id}; its weights would mean something else there. Use the "
            "reward model it was learned for (reward_model=<that PersRM directory>), or "
            "learn the profile again for this one (store.record_feedback, or put new weights)."
        )


def _is_anchor(user_id: str) -> bool:
    from langchain_pad.profiles import ANCHOR_PREFIX

    return user_id.startswith(ANCHOR_PREFIX)
