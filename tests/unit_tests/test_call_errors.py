"""Issue 17's careless-caller cases against the library: each a clear error naming the
parameter and the accepted form, or the behaviour LangChain and the OpenAI API define."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def llm(tiny_chat_model):
    return tiny_chat_model(max_tokens=4)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("12", r"weights: got '12' \(str\); pass weights as \{axis: number\}"),
        ({"expertise": None}, r"weights\['expertise'\] must be a number, got None"),
        ({"expertise": "abc"}, r"weights\['expertise'\] must be a number, got 'abc'"),
        ([1], r"weights: got 1 weights but the reward model has 3 axes"),
        (5, r"weights: got 5 \(int\)"),
        ({"expertise": 1.5}, r"weights\['expertise'\] must be a strength in \[-1, 1\]"),
        ({"humour": 1.0}, r"weights: unknown preference axes \['humour'\]"),
    ],
)
def test_bad_weights_name_the_parameter_and_the_form(llm, weights, message):
    with pytest.raises(ValueError, match=message):
        llm.invoke("hi", weights=weights)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": "hot"}, r"temperature"),
        ({"temperature": math.nan}, r"temperature"),
        ({"seed": 2**64}, r"seed"),
        ({"raw_weights": {"expertise": 1e6}}, r"raw_weights\['expertise'\] must be finite"),
        ({"plausibility": 1.0}, r"plausibility must be a number in \[0, 1\)"),
        ({"max_tokens": "3"}, r"max_tokens must be an integer >= 1 .*got '3'"),
        ({"max_tokens": 0}, r"max_tokens must be an integer >= 1"),
        ({"max_tokens": True}, r"max_tokens must be an integer >= 1"),
    ],
)
def test_bad_sampling_values_name_the_parameter(llm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        llm.invoke("hi", **kwargs)


def test_a_nan_temperature_is_not_reported_as_too_large(llm):
    with pytest.raises(ValueError) as info:
        llm.invoke("hi", temperature=math.nan)
    assert "<= 2" not in str(info.value)


def test_a_string_stop_is_one_stop_sequence(llm):
    """As LangChain and the OpenAI API read it: not a set of characters."""
    free = llm.invoke("hi", max_tokens=12).content
    assert isinstance(free, str) and len(free) >= 6
    stop = free[3:6]
    stopped = llm.invoke("hi", max_tokens=12, stop=stop).content
    assert stopped == free[: free.index(stop)]


def test_a_lone_surrogate_names_the_message(llm):
    with pytest.raises(ValueError, match=r"message 0 contains a character that is not valid"):
        llm.invoke("a\ud800b")
