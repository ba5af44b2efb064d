"""PADRuntime on the tiny model: one decoding thread for plain rows and every reward model."""

from __future__ import annotations

import threading

import pytest

from langchain_pad import PADChatModel
from langchain_pad.engine import GenerationRequest, SamplingParams
from langchain_pad.engine.pad import PADGuidance, PADGuide
from langchain_pad.runtime import PADRuntime

from .test_reward_model import calibrate_uniform, perturbed


@pytest.fixture(scope="module")
def two_reward_models(tiny_model, tmp_path_factory):
    first = perturbed(tiny_model, scale=0.5, seed=1)
    second = perturbed(tiny_model, scale=0.5, seed=2)
    return (
        str(calibrate_uniform(first.save(tmp_path_factory.mktemp("rm-a")))),
        str(calibrate_uniform(second.save(tmp_path_factory.mktemp("rm-b")))),
    )


@pytest.fixture
def runtime(tiny_loaded):
    runtime = PADRuntime.from_loaded(tiny_loaded, max_batch_size=16)
    yield runtime
    runtime.close()


def decoder_threads() -> int:
    return sum(t.name == "langchain-pad-decoder" and t.is_alive() for t in threading.enumerate())


def test_rows_of_two_reward_models_and_plain_rows_share_a_batch(
    tiny_engine, runtime, two_reward_models
):
    a, b = (runtime.reward_model(path) for path in two_reward_models)
    rows = [
        GenerationRequest(
            tuple(b"one"), SamplingParams(12), PADGuidance((3, 0, 0), reward_model=a)
        ),
        GenerationRequest(tuple(b"two, longer"), SamplingParams(12)),
        GenerationRequest(
            tuple(b"three"), SamplingParams(12), PADGuidance((0, -3, 1), reward_model=b)
        ),
        GenerationRequest(
            tuple(b"four"), SamplingParams(12), PADGuidance((3, 0, 0), reward_model=b)
        ),
    ]
    guide = PADGuide()
    together = tiny_engine.generate(rows, guide)
    for row, out in zip(rows, together, strict=True):
        alone = tiny_engine.generate([row], guide)[0]
        assert out.token_ids == alone.token_ids
        assert [r.reward for r in out.records] == pytest.approx(
            [r.reward for r in alone.records], abs=1e-4
        )
    assert together[1].records == []  # the plain row ran no adapter and reports nothing
    # the same weights under another reward model steer differently
    assert together[0].records[0].features != together[3].records[0].features


def test_models_of_one_runtime_share_its_thread_and_waves(runtime, two_reward_models):
    plain = PADChatModel(runtime=runtime, max_tokens=8)
    first = PADChatModel(runtime=runtime, max_tokens=8, reward_model=two_reward_models[0])
    second = PADChatModel(runtime=runtime, max_tokens=8, reward_model=two_reward_models[1])
    before = decoder_threads()
    with runtime.gathering(4):
        results: list[object] = [None] * 4
        calls = [
            lambda: plain.invoke("hello"),
            lambda: first.invoke("hello", weights={"expertise": 0.75}),
            lambda: second.invoke("hello", weights={"expertise": 0.75}),
            lambda: plain.invoke("bye"),
        ]

        def run(i: int) -> None:
            results[i] = calls[i]()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert runtime.scheduler.wave_sizes[-1] == 4
    assert decoder_threads() - before <= 1
    assert runtime.stats()["decoding_threads"] == 1
    assert sorted(runtime.stats()["reward_models"]) == sorted(two_reward_models)
    assert "pad_weights" in results[1].response_metadata  # type: ignore[attr-defined]
    assert "pad_weights" not in results[0].response_metadata  # type: ignore[attr-defined]


def test_batch_with_weights_is_one_wave(runtime, tiny_persrm_dir):
    llm = PADChatModel(runtime=runtime, max_tokens=6, reward_model=tiny_persrm_dir)
    answers = llm.batch([f"prompt {i}" for i in range(8)], weights={"expertise": 0.5})
    assert runtime.scheduler.wave_sizes[-1] == 8
    assert all("pad_summary" in a.response_metadata for a in answers)


def test_statistics_keep_a_window_and_count_everything(tiny_loaded):
    runtime = PADRuntime.from_loaded(tiny_loaded, stats_window=3)
    try:
        llm = PADChatModel(runtime=runtime, max_tokens=2, reward_model=None)
        for i in range(5):
            llm.invoke(f"p{i}")
        stats = runtime.stats()
        assert stats["window"] == 3 and len(stats["forward_passes_per_wave"]) == 3
        assert stats["totals"]["waves"] == 5 and stats["totals"]["rows"] == 5
        assert stats["totals"]["forward_passes"] >= 5
    finally:
        runtime.close()


def test_batching_settings_belong_to_the_runtime(runtime):
    with pytest.raises(ValueError, match="disagrees with the runtime"):
        PADChatModel(runtime=runtime, max_batch_size=4).get_runtime()
    assert PADChatModel(runtime=runtime, max_batch_size=16).get_runtime() is runtime
    runtime.batch_window = 0.01
    runtime.max_waves = 2
    assert (runtime.scheduler.batch_window, runtime.scheduler.max_waves) == (0.01, 2)
    with pytest.raises(ValueError, match="max_batch_size must be an integer >= 1"):
        runtime.max_batch_size = 0


def test_a_model_and_a_runtime_that_disagree_are_refused(runtime):
    with pytest.raises(ValueError, match="differ from the runtime"):
        PADChatModel(runtime=runtime, model="other-model")
    assert PADChatModel(runtime=runtime).model_name == runtime.model


def test_the_shared_runtime_is_one_per_model_and_dtype():
    a = PADRuntime.shared("some-model", "float32")
    assert PADRuntime.shared("some-model", "float32") is a
    assert PADRuntime.shared("some-model", "bfloat16") is not a
    assert a in PADRuntime.shared_runtimes()
    assert PADChatModel(model="some-model").get_runtime() is a


@pytest.mark.parametrize(
    ("dtype", "given", "used"),
    [
        ("float32", "auto", 1),
        ("int4", "auto", 1),
        ("bfloat16", "auto", None),
        ("int8", "auto", None),
        ("bfloat16", 1, 1),
        ("float32", None, None),
        ("float32", 2, 2),
    ],
)
def test_single_row_threads_default_per_dtype_and_follow_what_is_given(dtype, given, used):
    assert PADRuntime(dtype=dtype, single_row_threads=given).single_row_threads == used


@pytest.mark.parametrize("bad", [0, -2, 1.5, "one", True])
def test_bad_single_row_threads_are_clear_errors(bad):
    with pytest.raises(ValueError, match="single_row_threads must be None"):
        PADRuntime(single_row_threads=bad)
