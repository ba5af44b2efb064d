import math

import pytest

from langchain_pad.engine import GenerationRequest, SamplingParams


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"stop": ("",)}, "stop"),
    ],
)
def test_bad_sampling_params_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_greedy_is_temperature_zero():
    assert SamplingParams().greedy
    assert not SamplingParams(temperature=0.7).greedy


def test_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        GenerationRequest(())
