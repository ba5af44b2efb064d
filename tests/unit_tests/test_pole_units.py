"""Strengths in pole units: calibration files, conversion, old profiles, the guard."""

from __future__ import annotations

import json
import sqlite3

import pytest

from langchain_pad.calibration import (
    CalibrationError,
    PoleCalibration,
    load_calibration,
    write_calibration,
)
from langchain_pad.profiles import PreferenceProfile, SQLiteProfileStore
from langchain_pad.profiles.testing import AXES, REWARD_MODEL, HashingEmbedder, fake_persrm

CALIBRATION = PoleCalibration(tuple(AXES), (6.0, 2.0, 3.0), (6.0, 4.0, 3.0))


def test_strengths_map_linearly_onto_each_pole():
    assert CALIBRATION.to_raw((1.0, -1.0, 0.0)) == (6.0, -2.0, 0.0)
    assert CALIBRATION.to_raw((-0.5, 0.5, 0.25)) == (-3.0, 2.0, 0.75)
    strengths, clamped = CALIBRATION.to_strengths((3.0, 4.0, -9.0))
    assert strengths == (0.5, 1.0, -1.0) and clamped


def test_calibration_file_round_trip_and_clear_errors(tmp_path):
    write_calibration(tmp_path, CALIBRATION)
    assert load_calibration(tmp_path, AXES).to_raw((1, 1, 1)) == (6.0, 4.0, 3.0)
    with pytest.raises(CalibrationError, match=r"no calibration for axes \['humour'\]"):
        load_calibration(tmp_path, [*AXES, "humour"])
    data = json.loads((tmp_path / "calibration.json").read_text())
    data["axes"]["style"]["low"] = 0
    (tmp_path / "calibration.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="low pole has magnitude 0"):
        load_calibration(tmp_path, AXES)
    empty = tmp_path / "uncalibrated"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="langchain-pad calibrate"):
        load_calibration(empty, AXES)


def test_format_one_anchors_are_read_as_the_poles(tmp_path):
    """A PersRM from before pole units: its raw anchors are its calibration."""
    anchors = [
        {"name": "expertise:elementary", "description": "simple", "weights": {"expertise": -6}},
        {"name": "expertise:expert", "description": "expert", "weights": {"expertise": 4}},
    ]
    (tmp_path / "anchors.json").write_text(
        json.dumps({"format_version": 1, "axes": AXES, "anchors": anchors})
    )
    table = load_calibration(tmp_path, AXES)
    assert table.scale("expertise") == (6.0, 4.0)
    from langchain_pad.profiles.anchors import load_anchors

    profiles = load_anchors(tmp_path).profiles(REWARD_MODEL)
    assert [p.weights["expertise"] for p in profiles] == [-1.0, 1.0]


def test_a_strength_outside_the_poles_is_a_clear_error():
    with pytest.raises(ValueError, match=r"outside \[-1, 1\]: weights are strengths in pole"):
        PreferenceProfile(user_id="ana", weights={"style": 2.0}, reward_model=REWARD_MODEL)


def test_profiles_saved_before_pole_units_are_converted_with_nothing_lost(tmp_path):
    """An old store's rows hold raw w_p and no unit: read back as strengths, the raw
    values kept, and the next save writes the new form."""
    persrm = fake_persrm(tmp_path / "persrm")
    write_calibration(persrm, CALIBRATION)
    path = tmp_path / "profiles.sqlite3"
    store = SQLiteProfileStore(path, embedder=HashingEmbedder(), reward_model=persrm)
    ref = store.reward_model_ref
    assert ref is not None
    store.put(PreferenceProfile(user_id="ana", weights={"style": 0.5}, reward_model=ref))
    store.close()
    # rewrite ana's rows as an older langchain-pad wrote them: raw weights, no unit
    with sqlite3.connect(path) as db:
        for table in ("profiles", "history"):
            for rowid, data in db.execute(f"SELECT rowid, data FROM {table}").fetchall():
                profile = json.loads(data)
                if profile.get("user_id") != "ana":
                    continue
                profile.pop("unit"), profile.pop("migrated_raw_weights")
                profile["weights"] = {"expertise": -3.0, "informativeness": 8.0, "style": 1.5}
                db.execute(
                    f"UPDATE {table} SET data = ? WHERE rowid = ?", (json.dumps(profile), rowid)
                )
    store = SQLiteProfileStore(path, embedder=HashingEmbedder(), reward_model=persrm)
    ana = store.require("ana")
    assert ana.weights == {"expertise": -0.5, "informativeness": 1.0, "style": 0.5}
    assert ana.migrated_raw_weights == {"expertise": -3.0, "informativeness": 8.0, "style": 1.5}
    first = store.history("ana")[0].profile
    assert first is not None and first.weights == ana.weights
    saved = store.put(ana.model_copy(update={"description": "now in pole units"}))
    assert saved.unit == "pole" and saved.migrated_raw_weights == ana.migrated_raw_weights
    assert store.check_integrity() == []
