"""`langchain-pad data generate` on the real model: files, manifest, resume, refusal."""

from __future__ import annotations

import json

import pytest

from langchain_pad.cli import main
from langchain_pad.datagen import read_dataset
from langchain_pad.datagen.dataset import SAMPLES_FILE

ARGS = ["--axes", "expertise", "--limit", "3", "--max-new-tokens", "8", "--batch-size", "4"]


def test_generate_writes_a_dataset_and_resumes(loaded, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "generate", "--out", str(out), *ARGS]) == 0
    samples = (out / SAMPLES_FILE).read_text().splitlines()
    assert len(samples) == 6  # 3 prompts x 2 poles
    rows = [json.loads(line) for line in samples]
    assert {r["pole"] for r in rows} == {"elementary", "expert"}
    assert all(r["tokens"] <= 8 for r in rows)

    manifest, pairs = read_dataset(out)
    counts = manifest.axes["expertise"]
    assert counts.prompts == 3 and counts.pairs_kept == len(pairs)
    assert counts.filter_rate == pytest.approx(1 - len(pairs) / 3, abs=1e-3)
    assert manifest.settings["max_new_tokens"] == 8
    assert "expertise" in capsys.readouterr().out

    # a second run with the same settings samples nothing new
    assert main(["data", "generate", "--out", str(out), *ARGS]) == 0
    assert (out / SAMPLES_FILE).read_text().splitlines() == samples

    # other settings into the same folder: refused unless --force
    other = [*ARGS[:-1], "2"]
    assert main(["data", "generate", "--out", str(out), *other]) != 0
    assert "pass --force" in capsys.readouterr().err
    assert main(["data", "generate", "--out", str(out), *other, "--force"]) == 0
