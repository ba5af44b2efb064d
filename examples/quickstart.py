"""Quickstart: a LangChain chain on the embedded local model, streamed and batched.

Run: `.venv/bin/python examples/quickstart.py` (after `make demo` or `make test`).
"""

from __future__ import annotations

import sys

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_pad import PADChatModel


def main(max_tokens: int = 48) -> None:
    llm = PADChatModel(max_tokens=max_tokens)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a concise assistant."), ("human", "Explain {topic} briefly.")]
    )
    chain = prompt | llm | StrOutputParser()

    for piece in chain.stream({"topic": "tides"}):
        print(piece, end="", flush=True)
    print()

    # One real batch: both answers are decoded together, one forward pass per step.
    topics = ["rainbows", "volcanoes"]
    answers = chain.batch([{"topic": t} for t in topics])
    for topic, answer in zip(topics, answers, strict=True):
        print(f"[{topic}] {answer}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
