"""Saving, retrieving and matching preference profiles (the default SQLite store).

Run: `.venv/bin/python examples/profiles.py [store_path]` (default: a temporary file).

Profiles are versioned (every save keeps the previous one), survive restarts, and a
preference described in words that nobody has stored is matched to the nearest known
profiles by embedding similarity.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _demo import reward_model_dir

from langchain_pad.models import resolve_reward_model
from langchain_pad.profiles import PreferenceProfile, SQLiteProfileStore, reward_model_ref


def main(path: Path) -> None:
    ref = reward_model_ref(resolve_reward_model(reward_model_dir()))
    with SQLiteProfileStore(path) as store:
        for user_id, description, weights in (
            (
                "ana",
                "I'm a cardiologist: skip the basics, use the medical terms.",
                {"expertise": 1.0},
            ),
            ("ben", "Short answers please, just the bottom line.", {"informativeness": -0.5}),
            ("cleo", "Tell me everything, with all the background.", {"informativeness": 1.0}),
        ):
            store.put(
                PreferenceProfile(
                    user_id=user_id, description=description, weights=weights, reward_model=ref
                )
            )
        # a second save makes version 2; version 1 stays in the history
        ben = store.require("ben")
        store.put(ben.model_copy(update={"weights": {"informativeness": -1.0}}))

    with SQLiteProfileStore(path) as store:  # reopened: everything is still there
        ben = store.require("ben")
        print(f"[get] ben v{ben.version}: {ben.weights}")
        versions = [(h.version, h.profile.weights) for h in store.history("ben") if h.profile]
        print(f"[history] ben: {versions}")
        print(f"[list] {[p.user_id for p in store.list_profiles(kind='user')]}")
        for text in (
            "I'm a doctor, be technical",
            "keep it short, just the bottom line",
            "give me all the details and the background",
        ):
            # among the users; without kind= the PersRM's anchor poles (which every store
            # holds) compete too, and "keep it short" names the concise pole itself
            result = store.match(text, kind="user")
            best = result.best
            if best is None or result.weights is None:
                print(f"[match] {text!r}: no profile is close enough")
                continue
            print(
                f"[match] {text!r} -> {best.profile.user_id} "
                f"(similarity {best.similarity:.2f}); w_p {_rounded(result.weights)}"
            )
        pole = store.match("explain it like I'm five").best  # a new file matches out of the box
        print(f"[anchor] 'explain it like I'm five' -> {pole.profile.user_id if pole else None}")


def _rounded(weights: dict[str, float]) -> dict[str, float]:
    return {axis: round(value, 2) for axis, value in weights.items() if value}


if __name__ == "__main__":
    target = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(tempfile.mkdtemp(prefix="pad-profiles-")) / "profiles.sqlite3"
    )
    main(target)
