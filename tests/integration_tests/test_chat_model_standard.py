"""LangChain's standard integration suite, on the real embedded model."""

from __future__ import annotations

from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_pad import PADChatModel
from langchain_pad.models import convert_embedded_model


class TestPADChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[PADChatModel]:
        return PADChatModel

    @property
    def chat_model_params(self) -> dict:
        # Short answers keep the suite fast on a 2-core CPU; every test still decodes,
        # and a tool call (about 40 tokens with its markers) still fits.
        return {"max_tokens": 64}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        # The same weights under another name: the converted directory's path.
        return str(convert_embedded_model(show_progress=False))
