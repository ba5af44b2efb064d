"""``with_structured_output`` as LangChain composes it: a bound model, then a parser.

The binding decides the grammar (``response_format`` for JSON, a forced tool call for
``function_calling``); the parser turns the message into the pydantic object or dict.
``include_raw=True`` gives ``{"raw", "parsed", "parsing_error"}`` as LangChain's other
chat models do, so agents and chains can treat this model like theirs.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough

if TYPE_CHECKING:
    from langchain_core.language_models import LanguageModelInput

    from langchain_pad.chat_model import PADChatModel

Method = Literal["json_schema", "function_calling", "json_mode"]


def structured_runnable(
    llm: PADChatModel, schema: Any, *, method: Method, include_raw: bool
) -> Runnable[LanguageModelInput, Any]:
    """``llm`` bound to answer under ``schema``, followed by the parser."""
    from langchain_pad.structured_output import structured_output_plan

    plan = structured_output_plan(schema, method)  # a schema it cannot compile fails here
    trace = {"ls_structured_output_format": {"kwargs": {"method": method}, "schema": plan.schema}}
    if method == "function_calling":
        if plan.tool is None:  # the plan of this method always names its tool
            raise RuntimeError("function_calling plan without a tool")
        name = plan.tool.name
        bound = llm.bind_tools([plan.tool.openai()], tool_choice=name, **trace)
        parse = plan.parse

        def from_call(message: AIMessage) -> Any:
            import json

            from langchain_core.exceptions import OutputParserException

            calls = [c for c in message.tool_calls if c["name"] == name]
            if not calls:
                reasons = [c.get("error") for c in message.invalid_tool_calls]
                raise OutputParserException(
                    f"No usable call to {name!r} in the answer: {reasons or 'no call'} "
                    "(was the token budget too small?)",
                    llm_output=str(message.content),
                )
            text = f'<tool_call>\n{{"name": {json.dumps(name)}, "arguments": '
            return parse(text + json.dumps(calls[0]["args"]) + "}\n</tool_call>")

        parser: Runnable[AIMessage, Any] = RunnableLambda(from_call)
    else:
        response_format: dict[str, Any] = (
            {"type": "json_object"}
            if plan.schema is None
            else {
                "type": "json_schema",
                "json_schema": {
                    "name": str((plan.schema or {}).get("title", "output")),
                    "schema": plan.schema,
                },
            }
        )
        bound = llm.bind(response_format=response_format, **trace)
        parse_text = plan.parse
        parser = RunnableLambda(lambda message: parse_text(str(message.content)))
    if not include_raw:
        return bound | parser
    parsed = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parsed.with_fallbacks([fallback], exception_key="parsing_error")
