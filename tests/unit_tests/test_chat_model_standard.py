"""LangChain's standard unit suite for PADChatModel (construction only, no weights)."""

from __future__ import annotations

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_pad import PADChatModel

pytestmark = pytest.mark.filterwarnings("ignore:PADChatModel ignores unknown parameter")


class TestPADChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[PADChatModel]:
        return PADChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model": "smollm2-135m-instruct"}

    @property
    def supports_json_mode(self) -> bool:
        return True
