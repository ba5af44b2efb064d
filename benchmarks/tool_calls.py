"""Tool calls and extraction on the embedded 135M model: validity and accuracy, with and
without PAD steering.

Why it is built this way:

* **Held-out prompts, written for this benchmark** and not used to tune anything (the
  router's threshold and the grammar caps were chosen on other requests): 12 tool calls
  over three tools and 10 extractions into two pydantic schemas.
* **Validity is checked, not assumed**: a call counts as schema-valid only if it parses
  and its arguments validate against the tool's JSON schema (pydantic builds them); an
  extraction only if the pydantic model validates. A call cut off by the token budget
  counts as invalid.
* **Accuracy is exact**: the expected tool name, and each expected argument or field
  value compared after light normalization (case, surrounding spaces, numbers as
  numbers). A field the model fills with something else counts as wrong.
* **Three conditions** through the public API: no steering, and the expertise axis at
  the shipped anchors (-6 elementary, +6 expert). Tool calls run with ``tool_choice=
  "required"`` so every prompt yields a call to score (the router's own call-or-not
  decision is measured in ``tests/integration_tests/test_tool_router_real.py``).
  ``steer_tool_calls=True`` is used for the steered rows, since by default a call's
  arguments are decoded unsteered (what this benchmark shows the reason for).

``python benchmarks/tool_calls.py``; results in ``benchmarks/results/tool_calls.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from langchain_pad import PADChatModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import machine_info

RESULTS = Path(__file__).resolve().parent / "results"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression such as 12 * 7.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "glossary",
            "description": "Look up the definition of a science term.",
            "parameters": {
                "type": "object",
                "properties": {"term": {"type": "string"}},
                "required": ["term"],
            },
        },
    },
]

CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("What is 45 + 19?", "calculator", {"expression": "45 + 19"}),
    ("Compute 120 / 8 for me.", "calculator", {"expression": "120 / 8"}),
    ("How much is 9 * 13?", "calculator", {"expression": "9 * 13"}),
    ("Subtract 37 from 100.", "calculator", {"expression": "100 - 37"}),
    ("Is it raining in London right now?", "get_weather", {"city": "London"}),
    ("What's the weather like in Tokyo?", "get_weather", {"city": "Tokyo"}),
    ("Should I bring a coat in Oslo today?", "get_weather", {"city": "Oslo"}),
    ("Weather forecast for Cairo, please.", "get_weather", {"city": "Cairo"}),
    ("What does the word osmosis mean?", "glossary", {"term": "osmosis"}),
    ("Define entropy.", "glossary", {"term": "entropy"}),
    ("Look up mitochondria in the glossary.", "glossary", {"term": "mitochondria"}),
    ("What is a photon?", "glossary", {"term": "photon"}),
]


class Person(BaseModel):
    name: str
    age: int


class Book(BaseModel):
    title: str
    author: str
    year: int


EXTRACTIONS: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
    ("Marie Curie was 66 years old when she died.", Person, {"name": "Marie Curie", "age": 66}),
    ("Alan Turing, aged 41.", Person, {"name": "Alan Turing", "age": 41}),
    ("My neighbour Tom is 29.", Person, {"name": "Tom", "age": 29}),
    ("Grace Hopper lived to 85 years.", Person, {"name": "Grace Hopper", "age": 85}),
    ("Sofia turned 12 last week.", Person, {"name": "Sofia", "age": 12}),
    (
        "Dune is a novel by Frank Herbert published in 1965.",
        Book,
        {"title": "Dune", "author": "Frank Herbert", "year": 1965},
    ),
    (
        "George Orwell wrote 1984, which came out in 1949.",
        Book,
        {"title": "1984", "author": "George Orwell", "year": 1949},
    ),
    (
        "In 1813 Jane Austen published Pride and Prejudice.",
        Book,
        {"title": "Pride and Prejudice", "author": "Jane Austen", "year": 1813},
    ),
    (
        "The Hobbit (J.R.R. Tolkien, 1937).",
        Book,
        {"title": "The Hobbit", "author": "J.R.R. Tolkien", "year": 1937},
    ),
    (
        "Beloved, by Toni Morrison, appeared in 1987.",
        Book,
        {"title": "Beloved", "author": "Toni Morrison", "year": 1987},
    ),
]

CONDITIONS: dict[str, dict[str, float] | None] = {
    "no steering": None,
    "elementary (-1)": {"expertise": -1.0},
    "expert (+1)": {"expertise": 1.0},
}


def same(got: Any, expected: Any) -> bool:
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        try:
            return float(got) == float(expected)
        except (TypeError, ValueError):
            return False
    return str(got).strip().lower().replace(" ", "") == str(expected).strip().lower().replace(
        " ", ""
    )


def score_call(message: Any, name: str, expected: dict[str, Any]) -> dict[str, Any]:
    calls = message.tool_calls
    valid = False
    args: dict[str, Any] = {}
    if len(calls) == 1:
        spec = next(t["function"] for t in TOOLS if t["function"]["name"] == calls[0]["name"])
        args = calls[0]["args"]
        required = spec["parameters"]["required"]
        props = spec["parameters"]["properties"]
        valid = all(k in args for k in required) and all(
            isinstance(args[k], str) for k in props if k in args
        )
    right_tool = bool(calls) and calls[0]["name"] == name
    fields = [right_tool and same(args.get(k), v) for k, v in expected.items()]
    return {
        "valid": valid,
        "right_tool": right_tool,
        "fields_right": sum(fields),
        "fields": len(fields),
        "calls": calls,
        "invalid": message.invalid_tool_calls,
    }


def score_extraction(result: dict[str, Any], schema: type[BaseModel], expected: dict[str, Any]):
    parsed = result.get("parsed")
    valid = False
    if parsed is not None:
        try:
            schema.model_validate(parsed.model_dump())
            valid = True
        except ValidationError:
            valid = False
    data = parsed.model_dump() if parsed is not None else {}
    fields = [same(data.get(k), v) for k, v in expected.items()]
    return {
        "valid": valid,
        "fields_right": sum(fields),
        "fields": len(fields),
        "parsed": data,
        "error": None if result.get("parsing_error") is None else str(result["parsing_error"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--out", type=Path, default=RESULTS / "tool_calls")
    args = parser.parse_args()
    llm = PADChatModel(max_tokens=args.max_tokens, steer_tool_calls=True)
    info = machine_info(llm.get_runtime().loaded)
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    start = time.perf_counter()
    for condition, weights in CONDITIONS.items():
        kwargs = {} if weights is None else {"weights": weights}
        bound = llm.bind_tools(TOOLS, tool_choice="required")
        calls = [
            score_call(m, name, exp)
            for (q, name, exp), m in zip(
                CALLS, bound.batch([q for q, _, _ in CALLS], **kwargs), strict=True
            )
        ]
        extractions = []
        for schema in (Person, Book):
            items = [(q, exp) for q, s, exp in EXTRACTIONS if s is schema]
            steered = llm.model_copy(update={"weights": weights})
            structured = steered.with_structured_output(schema, include_raw=True)
            results = structured.batch([q for q, _ in items])
            extractions += [
                score_extraction(r, schema, exp) for (q, exp), r in zip(items, results, strict=True)
            ]
        rows[condition] = {"calls": calls, "extractions": extractions}
        valid = sum(r["valid"] for r in calls + extractions)
        print(f"{condition}: {valid}/{len(calls) + len(extractions)} valid", flush=True)
    wall = time.perf_counter() - start

    def summary(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "valid": sum(i["valid"] for i in items),
            "n": len(items),
            "fields_right": sum(i["fields_right"] for i in items),
            "fields": sum(i["fields"] for i in items),
        }

    table = {
        c: {"calls": summary(r["calls"]), "extractions": summary(r["extractions"])}
        for c, r in rows.items()
    }
    for c, r in rows.items():
        table[c]["calls"]["right_tool"] = sum(i["right_tool"] for i in r["calls"])
    report = {
        "machine": info,
        "settings": {"max_tokens": args.max_tokens},
        "wall_s": wall,
        "summary": table,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    lines = [
        "# Tool calls and extraction, embedded SmolLM2-135M",
        "",
        f"Machine: {info['cpu_model']}, commit {info['git_commit']}; greedy, "
        f"max_tokens {args.max_tokens}; {len(CALLS)} tool-call and {len(EXTRACTIONS)} "
        f"extraction prompts (held out); {wall:.0f} s in all.",
        "",
        "| condition | calls schema-valid | right tool | call args right | extractions valid "
        "| fields right |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c, t in table.items():
        calls, ext = t["calls"], t["extractions"]
        lines.append(
            f"| {c} | {calls['valid']}/{calls['n']} | {calls['right_tool']}/{calls['n']} | "
            f"{calls['fields_right']}/{calls['fields']} | {ext['valid']}/{ext['n']} | "
            f"{ext['fields_right']}/{ext['fields']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
