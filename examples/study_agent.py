"""A per-user study helper agent: LangChain v1 ``create_agent`` with tools, steered per user.

Run: `.venv/bin/python examples/study_agent.py [max_tokens]`.

One agent serves every user. It has two tools (a calculator and a glossary lookup);
the ``PADPersonalization`` middleware reads the user from the run context and applies
that user's preference to every model call of the loop. The tool calls are grammar-
constrained (always valid JSON for the tool's schema); the final answers differ per user.
"""

from __future__ import annotations

import ast
import operator
import sys

from langchain.agents import create_agent
from langchain_core.tools import tool

from langchain_pad import PADChatModel
from langchain_pad.integrations.agents import PADPersonalization
from langchain_pad.integrations.langgraph import PADContext

GLOSSARY = {
    "photosynthesis": "how plants turn light, water and carbon dioxide into sugar and oxygen",
    "entropy": "a measure of how many ways a system's parts can be arranged",
    "mitochondria": "the parts of a cell that turn food into usable energy",
}
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / such as 12 * 7."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not arithmetic: {expression!r}")

    try:
        result = value(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return f"error: {exc}"
    return f"{result:g}"


@tool
def glossary(term: str) -> str:
    """Look up the definition of a science term in the glossary."""
    return GLOSSARY.get(term.strip().lower(), f"no entry for {term!r}")


USERS = {
    "kid": PADContext(preference="explain it like I'm five"),
    "expert": PADContext(weights={"expertise": 1.0}),
}


def main(max_tokens: int = 96) -> None:
    agent = create_agent(
        PADChatModel(max_tokens=max_tokens),
        tools=[calculator, glossary],
        middleware=[PADPersonalization()],
        context_schema=PADContext,
    )
    for question in ["What is 12 * 7?", "What does photosynthesis mean?"]:
        for name, context in USERS.items():
            state = agent.invoke({"messages": [("user", question)]}, context=context)
            calls = [c["name"] for m in state["messages"] for c in getattr(m, "tool_calls", [])]
            results = [m.content for m in state["messages"] if m.type == "tool"]
            print(f"[{name}] {question} tools={calls} results={results}")
            print(f"[{name} answer] {state['messages'][-1].content}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 96)
