"""``langchain-pad demo``: one streamed answer, then two users and the base model side by side."""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langchain_pad.models import DEFAULT_MODEL

_DEMO_QUESTION = "Explain why the sky is blue."


def _demo_users() -> tuple[list[str], dict[str, dict[str, float]]]:
    """Two users built from the shipped PersRM's anchor profiles, on opposite poles."""
    from langchain_pad.models import default_reward_model_path

    anchors = json.loads((default_reward_model_path() / "anchors.json").read_text())
    axes: list[str] = anchors["axes"]
    by_name = {a["name"]: a["weights"] for a in anchors["anchors"]}

    def combine(*names: str) -> dict[str, float]:
        return {axis: sum(by_name[n][axis] for n in names) for axis in axes}

    return axes, {
        "Ana (wants it simple and short)": combine(
            "expertise:elementary", "informativeness:concise"
        ),
        "Ben (wants expert detail)": combine("expertise:expert", "informativeness:thorough"),
    }


def _cmd_demo(args: argparse.Namespace) -> int:
    from rich.columns import Columns
    from rich.console import Console
    from rich.panel import Panel

    from langchain_pad import PADChatModel, TokenRewardHandler
    from langchain_pad.models import load_model
    from langchain_pad.render import print_traces, render_html

    console = Console()
    console.print(f"[bold]langchain-pad demo[/bold]: model [cyan]{args.model}[/cyan]")
    started = time.perf_counter()
    load_model(args.model)
    console.print(f"model loaded in {time.perf_counter() - started:.1f} s")
    llm = PADChatModel(model=args.model, max_tokens=args.max_tokens)

    question = args.question or _DEMO_QUESTION
    console.print(Panel(question, title="streaming one answer (no personalization)"))
    started = time.perf_counter()
    tokens = 0
    for chunk in llm.stream(question):
        console.print(chunk.content, end="", soft_wrap=True, highlight=False)
        if chunk.usage_metadata:
            tokens = chunk.usage_metadata["output_tokens"]
    elapsed = time.perf_counter() - started
    console.print(
        f"\n[dim]{tokens} tokens in {elapsed:.1f} s ({tokens / elapsed:.1f} tokens/s)[/dim]"
    )

    # Two users and the base model, one question: the three rows decode in one batch
    # (concurrent calls share the decoding thread's waves), each with its own w_p.
    axes, users = _demo_users()
    handler = TokenRewardHandler()
    labels = ["Base model", *users]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(labels)) as pool:
        answers = list(
            pool.map(
                lambda label: llm.invoke(
                    question,
                    config={"callbacks": [handler], "metadata": {"pad_label": label}},
                    # all-zero weights decode exactly like the plain model, in the same batch
                    weights=users.get(label, dict.fromkeys(axes, 0.0)),
                ),
                labels,
            )
        )
    elapsed = time.perf_counter() - started
    console.print(
        Columns(
            [
                Panel(
                    str(answer.content),
                    title=label,
                    subtitle=", ".join(f"{k} {v:+g}" for k, v in users.get(label, {}).items() if v)
                    or "no preference",
                    width=max(30, console.width // len(labels) - 2),
                )
                for label, answer in zip(labels, answers, strict=True)
            ]
        )
    )
    console.print(f"[dim]three answers in {elapsed:.1f} s[/dim]")
    traces = sorted(handler.traces, key=lambda t: labels.index(t.label))
    console.print("[bold]Token rewards[/bold] (green: pushed towards the user's preference)")
    print_traces(*traces[1:], console=console)
    path = Path(args.html).resolve()
    render_html(*traces, path=path, title=f"What PAD changed: {question}")
    console.print(f"reward view saved to [cyan]{path}[/cyan] (open it in a browser)")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="stream and batch a few answers from the model")
    demo.add_argument("--model", default=DEFAULT_MODEL, help="model name, hub id or directory")
    demo.add_argument("--max-tokens", type=int, default=96)
    demo.add_argument("--question", default=None, help="ask this instead of the demo question")
    demo.add_argument("--html", default="pad_demo.html", help="where to save the reward view")
    demo.set_defaults(handler=_cmd_demo)
