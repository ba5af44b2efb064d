"""PADChatModel behaviour that needs no weights: parameters, validation, laziness."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from pydantic import ValidationError

from langchain_pad import DEFAULT_MODEL, PADChatModel
from langchain_pad.models import _cache


def test_defaults_to_the_embedded_model_and_loads_nothing_at_init():
    before = dict(_cache)
    llm = PADChatModel()
    assert llm.model_name == DEFAULT_MODEL
    assert dict(_cache) == before


def test_accepts_the_standard_parameters():
    llm = PADChatModel(
        model="some/model",
        temperature=0.3,
        max_tokens=12,
        stop=["x"],
        timeout=5,
        max_retries=2,
        streaming=True,
    )
    assert (llm.model_name, llm.temperature, llm.max_tokens, llm.stop) == (
        "some/model",
        0.3,
        12,
        ["x"],
    )
    assert llm.streaming is True


def test_unknown_constructor_parameter_is_reported_not_silently_dropped():
    with pytest.warns(UserWarning, match=r"ignores unknown parameter\(s\) \['api_key'\]"):
        PADChatModel(api_key="sk-test")


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1}, {"max_tokens": 0}, {"top_p": 0}, {"top_k": 0}, {"timeout": 0}]
)
def test_invalid_parameters_are_rejected(kwargs):
    with pytest.raises(ValidationError):
        PADChatModel(**kwargs)


def test_unknown_call_parameter_is_an_error_before_any_work(monkeypatch):
    llm = PADChatModel()
    monkeypatch.setattr(PADChatModel, "get_runtime", lambda *a, **k: pytest.fail("must not load"))
    with pytest.raises(TypeError, match=r"unknown call parameter\(s\) \['frequency_penalty'\]"):
        llm.invoke([HumanMessage("hi")], frequency_penalty=0.5)


def test_ls_params_report_call_overrides():
    llm = PADChatModel(max_tokens=10, stop=["a"])
    params = llm._get_ls_params(model="other", temperature=0.5)
    assert params["ls_provider"] == "pad"
    assert params["ls_model_name"] == "other"
    assert params["ls_temperature"] == 0.5
    assert params["ls_max_tokens"] == 10
    assert params["ls_stop"] == ["a"]
