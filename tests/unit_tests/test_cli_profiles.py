"""`langchain-pad profiles ...` end to end on a temporary store (hashing embedder)."""

from __future__ import annotations

import json

import pytest

from langchain_pad import cli
from langchain_pad.profiles import RewardModelRef
from langchain_pad.profiles.testing import CountingLearner, HashingEmbedder

from .test_profiles import ANCHORS_JSON, fake_persrm


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli.profiles, "_embedder", lambda args: HashingEmbedder())
    store = tmp_path / "profiles.sqlite3"

    def invoke(*argv):
        code = cli.main(["profiles", "--store", str(store), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def persrm(tmp_path):
    directory = fake_persrm(tmp_path / "rm")
    (directory / "anchors.json").write_text(json.dumps(ANCHORS_JSON))
    return str(directory)


def test_add_list_show_history(run, persrm):
    code, out, _ = run(
        "add",
        "Zoë",
        "--description",
        "warm kind tone",
        "--weight",
        "style=0.75",
        "--reward-model",
        persrm,
    )
    assert code == 0 and "Zoë  v1" in out and "style=+0.75" in out
    code, _, err = run("add", "Zoë", "--weight", "style=1", "--reward-model", persrm)
    assert code == 2 and "--update" in err
    assert run("add", "Zoë", "--weight", "style=1", "--reward-model", persrm, "--update")[0] == 0
    code, out, _ = run("list", "--kind", "user")
    assert "Zoë  v2" in out and "(1 of 1 profiles" in out
    # a store at any path holds the anchors of its reward model (here: the shipped one)
    assert "anchor:informativeness:thorough" in run("list")[1]
    code, out, _ = run("show", "Zoë")
    shown = json.loads(out)
    assert shown["weights"]["style"] == 1.0 and shown["description"] == "warm kind tone"
    code, out, _ = run("history", "Zoë")
    assert out.count("put") == 2 and "v1" in out and "v2" in out


def test_bad_input_is_a_clear_error(run, persrm):
    code, _, err = run("add", "ana", "--weight", "humour=1", "--reward-model", persrm)
    assert code == 2 and "unknown preference axes ['humour']" in err
    code, _, err = run("add", "ana", "--weight", "style", "--reward-model", persrm)
    assert code == 2 and "AXIS=VALUE" in err
    code, _, err = run("show", "nobody")
    assert code == 2 and "nobody" in err


def test_seed_and_match(run, persrm):
    # opening the store for this PersRM seeds its anchors already: seeding is idempotent
    assert "2 anchor profiles, 0 written" in run("seed", "--reward-model", persrm)[1]
    assert "0 written" in run("seed", "--reward-model", persrm)[1]
    code, out, _ = run("match", "be warm and kind")
    assert code == 0 and "* " in out and "anchor:style:warm" in out and "w_p = [" in out
    assert ", p=" in out  # two anchors: ranked
    code, out, _ = run("match", "be warm and kind", "--no-rerank")
    assert code == 0 and "anchor:style:warm" in out and ", p=" not in out
    code, out, _ = run("match", "zebra quantum lasagna")
    assert code == 1 and "no match" in out
    # opened without --reward-model: the shipped PersRM's four poles are seeded too
    assert "(5 of 5 profiles" in run("list", "--kind", "anchor")[1]


def test_feedback_export_import(run, persrm, tmp_path, monkeypatch):
    ref = RewardModelRef(id="x", axes=("expertise", "informativeness", "style"))
    monkeypatch.setattr(cli.profiles, "_learner", lambda args: CountingLearner(ref))
    for i in range(2):
        code, out, _ = run(
            "feedback",
            "ana",
            "--prompt",
            f"q{i}",
            "--chosen",
            "long",
            "--rejected",
            "short",
            "--reward-model",
            persrm,
        )
        assert code == 0
    assert "ana  v2" in out and "feedback=2" in out
    target = tmp_path / "export.json"
    assert run("export", str(target))[0] == 0
    data = json.loads(target.read_text())
    assert len(data["feedback"]) == 2
    other = tmp_path / "other.sqlite3"
    code = cli.main(["profiles", "--store", str(other), "import", str(target)])
    assert code == 0
    code = cli.main(["profiles", "--store", str(other), "history", "ana"])
    assert code == 0
