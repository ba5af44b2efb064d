from __future__ import annotations

import json
from collections import Counter

import pytest

from langchain_pad.axes import axes_by_name
from langchain_pad.datagen.dataset import (
    MANIFEST_FILE,
    PAIRS_FILE,
    DatasetManifest,
    SampleRecord,
    read_dataset,
    read_samples,
    sha256_file,
    write_jsonl,
    write_manifest,
)
from langchain_pad.datagen.generate import pair_samples, row_seed
from langchain_pad.datagen.prompts import PromptItem, load_prompts, split_of


def test_the_shipped_prompt_set_is_large_diverse_and_split():
    prompts = load_prompts()
    assert len(prompts) >= 300
    assert len({p.text.lower() for p in prompts}) == len(prompts)
    assert len({p.category for p in prompts}) >= 20
    heldout = sum(p.split == "heldout" for p in prompts)
    assert 0.08 * len(prompts) < heldout < 0.25 * len(prompts)
    first_words = Counter(p.text.split()[0] for p in prompts)
    assert first_words.most_common(1)[0][1] <= 0.25 * len(prompts)


def test_the_split_depends_on_the_id_alone():
    assert split_of("p001") == split_of("p001")
    assert {split_of(f"x{i}") for i in range(200)} == {"train", "heldout"}


def test_the_prompt_set_does_not_overlap_the_paper_eval_prompts():
    from pathlib import Path

    koala = Path(__file__).resolve().parents[3] / "shared" / "data" / "koala_eval_50.json"
    if not koala.is_file():
        pytest.skip("the shared P-Soups prompts are not beside this checkout")
    theirs = {row["prompt"].strip().lower() for row in json.loads(koala.read_text())}
    assert not theirs & {p.text.strip().lower() for p in load_prompts()}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not a prompt set"),
        ('{"prompts": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}', "duplicate"),
        ('{"prompts": [{"id": "a", "text": " "}]}', "empty prompt"),
    ],
)
def test_bad_prompt_sets_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_prompts(path)


def _sample(pid, axis, pole, text, score, finish="stop", index=0, second=None):
    return SampleRecord(
        prompt_id=pid,
        axis=axis,
        pole=pole,
        text=text,
        finish_reason=finish,
        tokens=5,
        score=score,
        index=index,
        second_score=second,
    )


def test_pairs_keep_only_judge_confirmed_directions():
    axis = axes_by_name(["expertise"])[0]
    prompts = [PromptItem(f"p{i}", "c", f"Q{i}?", "train") for i in range(4)]
    samples = [
        _sample("p0", "expertise", "expert", "hard words", 14.0),
        _sample("p0", "expertise", "elementary", "easy", 4.0, finish="length"),
        _sample("p1", "expertise", "expert", "meh", 5.0),  # gap 1 < 2: dropped
        _sample("p1", "expertise", "elementary", "meh too", 4.0),
        _sample("p2", "expertise", "expert", "wrong way", 3.0),  # reversed: dropped
        _sample("p2", "expertise", "elementary", "oops", 9.0),
        _sample("p3", "expertise", "expert", "only one side", 9.0),  # unpaired: dropped
    ]
    pairs, counts = pair_samples(prompts, [axis], samples)
    assert [p.id for p in pairs] == ["p0:expertise"]
    pair = pairs[0]
    assert (pair.chosen, pair.rejected) == ("hard words", "easy")
    assert pair.chosen_complete and not pair.rejected_complete
    c = counts["expertise"]
    assert (c.pairs_kept, c.prompts, c.filter_rate, c.mean_gap) == (1, 4, 0.75, 10.0)


def test_row_seeds_are_stable_and_distinct():
    assert row_seed(0, "p1", "style", "warm") == row_seed(0, "p1", "style", "warm")
    assert len({row_seed(0, "p1", "style", pole) for pole in ("warm", "blunt")}) == 2


def test_row_seeds_are_distinct_per_sample_index_and_index_0_is_unchanged():
    seeds = {row_seed(0, "p1", "style", "warm", i) for i in range(8)}
    assert len(seeds) == 8
    assert row_seed(0, "p1", "style", "warm", 0) == row_seed(0, "p1", "style", "warm")
    # the one-sample key of dataset v1, computed independently
    import hashlib

    v1 = int(hashlib.sha256(b"0:p1:style:warm").hexdigest()[:8], 16)
    assert row_seed(0, "p1", "style", "warm") == v1


def test_samples_per_pole_must_be_positive_and_n_1_keeps_the_old_plan():
    from langchain_pad.datagen.generate import GenerationSettings, _plan_settings

    with pytest.raises(ValueError, match="samples_per_pole"):
        GenerationSettings(samples_per_pole=0)
    assert "samples_per_pole" not in _plan_settings(GenerationSettings())
    assert _plan_settings(GenerationSettings(samples_per_pole=4))["samples_per_pole"] == 4


def _one_judge_axis():
    import dataclasses

    style = axes_by_name(["style"])[0]
    return dataclasses.replace(style, second_judge=None)


def test_best_of_n_pairs_the_warmest_high_with_the_coldest_low():
    axis = _one_judge_axis()
    prompts = [PromptItem("p0", "c", "Q?", "train")]
    samples = [
        _sample("p0", "style", "warm", "warm0", 0.1, index=0),
        _sample("p0", "style", "warm", "warm1", 0.9, index=1),
        _sample("p0", "style", "warm", "warm2", 0.5, index=2),
        _sample("p0", "style", "blunt", "blunt0", 0.2, index=0),
        _sample("p0", "style", "blunt", "blunt1", -0.6, index=1),
        _sample("p0", "style", "blunt", "blunt2", 0.4, index=2),
    ]
    # one sample per pole: index 0 only, gap 0.1 - 0.2 < 0.3: nothing kept (v1 behaviour)
    pairs, counts = pair_samples(prompts, [axis], samples)
    assert pairs == [] and counts["style"].samples_per_pole == 1
    pairs, counts = pair_samples(prompts, [axis], samples, samples_per_pole=3)
    assert [(p.chosen, p.rejected) for p in pairs] == [("warm1", "blunt1")]
    assert counts["style"].mean_gap == pytest.approx(1.5)
    assert counts["style"].samples_per_pole == 3
    assert counts["style"].second_judge is None and counts["style"].second_judge_agreement is None


def test_best_of_n_ties_go_to_the_lower_index_and_empty_answers_are_skipped():
    from langchain_pad.datagen.pairing import pick_extremes

    high = [
        _sample("p0", "style", "warm", "", 5.0, index=0),
        _sample("p0", "style", "warm", "b", 0.9, index=2),
        _sample("p0", "style", "warm", "a", 0.9, index=1),
    ]
    low = [_sample("p0", "style", "blunt", "c", -0.1, index=3)]
    picked = pick_extremes(high, low)
    assert picked is not None and (picked[0].text, picked[1].text) == ("a", "c")
    assert pick_extremes(high, []) is None


def test_the_second_judge_must_agree_in_direction_by_its_own_gap():
    axis = axes_by_name(["style"])[0]
    assert axis.second_judge == "warmth" and axis.second_min_gap > 0
    prompts = [PromptItem(f"p{i}", "c", f"Q{i}?", "heldout") for i in range(4)]
    gap = axis.second_min_gap
    samples = [
        # both judges agree: kept
        _sample("p0", "style", "warm", "w0", 0.8, second=0.05),
        _sample("p0", "style", "blunt", "b0", -0.5, second=0.05 - 2 * gap),
        # the second judge disagrees: dropped
        _sample("p1", "style", "warm", "w1", 0.8, second=-0.02),
        _sample("p1", "style", "blunt", "b1", -0.5, second=0.03),
        # the second judge moves, but by less than its gap: dropped
        _sample("p2", "style", "warm", "w2", 0.8, second=gap / 2),
        _sample("p2", "style", "blunt", "b2", -0.5, second=0.0),
        # the first judge fails: never reaches the second
        _sample("p3", "style", "warm", "w3", 0.1, second=0.5),
        _sample("p3", "style", "blunt", "b3", 0.0, second=-0.5),
    ]
    pairs, counts = pair_samples(prompts, [axis], samples)
    assert [p.id for p in pairs] == ["p0:style"]
    assert pairs[0].second_judge == "warmth"
    assert pairs[0].chosen_second_score == pytest.approx(0.05)
    c = counts["style"]
    assert (c.first_judge_pairs, c.pairs_kept, c.heldout_pairs) == (3, 1, 1)
    assert c.second_judge_agreement == pytest.approx(1 / 3, abs=1e-4)
    assert (c.second_judge, c.second_min_gap) == ("warmth", gap)


def test_samples_without_a_second_score_are_scored_when_paired():
    axis = axes_by_name(["style"])[0]
    prompts = [PromptItem("p0", "c", "Q?", "train")]
    samples = [
        _sample("p0", "style", "warm", "What a wonderful, delightful question!", 0.9),
        _sample("p0", "style", "blunt", "A stupid, annoying question.", -0.7),
    ]
    pairs, _ = pair_samples(prompts, [axis], samples)
    assert len(pairs) == 1
    assert pairs[0].chosen_second_score is not None and pairs[0].chosen_second_score > 0
    assert pairs[0].rejected_second_score is not None and pairs[0].rejected_second_score < 0


def test_a_torn_last_sample_line_is_dropped_on_resume(tmp_path):
    path = tmp_path / "samples.jsonl"
    write_jsonl(path, [_sample("p0", "style", "warm", "hi", 0.5)])
    with path.open("a") as handle:
        handle.write('{"prompt_id": "p1", "ax')
    assert [s.prompt_id for s in read_samples(path)] == ["p0"]


def test_an_edited_dataset_is_refused(tmp_path):
    axis = axes_by_name(["expertise"])[0]
    prompts = [PromptItem("p0", "c", "Q?", "train")]
    pairs, counts = pair_samples(
        prompts,
        [axis],
        [
            _sample("p0", "expertise", "expert", "a", 9),
            _sample("p0", "expertise", "elementary", "b", 1),
        ],
    )
    write_jsonl(tmp_path / PAIRS_FILE, pairs)
    manifest = DatasetManifest(
        dataset_version="t",
        created="now",
        langchain_pad_version="0",
        model="m",
        seed=0,
        settings={},
        prompt_set={},
        axes=counts,
        files={PAIRS_FILE: sha256_file(tmp_path / PAIRS_FILE)},
    )
    write_manifest(tmp_path, manifest)
    assert len(read_dataset(tmp_path)[1]) == 1
    with (tmp_path / PAIRS_FILE).open("a") as handle:
        handle.write(pairs[0].model_dump_json() + "\n")
    with pytest.raises(ValueError, match="does not match the sha256"):
        read_dataset(tmp_path)
    (tmp_path / MANIFEST_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="langchain-pad data generate"):
        read_dataset(tmp_path)


def test_the_cli_passes_samples_per_pole_and_prints_the_second_judge(monkeypatch, capsys):
    import langchain_pad.datagen as datagen
    from langchain_pad.cli import main

    seen = {}
    axis = axes_by_name(["style"])[0]
    _, counts = pair_samples([PromptItem("p0", "c", "Q?", "train")], [axis], [])

    def fake_generate(out, **kwargs):
        seen.update(kwargs)
        return DatasetManifest(
            dataset_version="t",
            created="now",
            langchain_pad_version="0",
            model="m",
            seed=0,
            settings={},
            prompt_set={},
            axes=counts,
        )

    monkeypatch.setattr(datagen, "generate_dataset", fake_generate)
    assert main(["data", "generate", "--out", "x", "--axes", "style"]) == 0
    assert seen["settings"].samples_per_pole == 1
    assert main(["data", "generate", "--out", "x", "--samples-per-pole", "4"]) == 0
    assert seen["settings"].samples_per_pole == 4
    assert seen["settings"].judge_guidance == 0.0 and seen["settings"].pole_prompts
    args = ["data", "generate", "--out", "x", "--judge-guidance", "5", "--no-pole-prompts"]
    assert main(args) == 0
    assert seen["settings"].judge_guidance == 5.0 and not seen["settings"].pole_prompts
    assert "warmth agreed with 0 of 0 pairs" in capsys.readouterr().out
