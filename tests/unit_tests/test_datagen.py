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


def _sample(pid, axis, pole, text, score, finish="stop"):
    return SampleRecord(
        prompt_id=pid, axis=axis, pole=pole, text=text, finish_reason=finish, tokens=5, score=score
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
