"""The ``langchain-pad`` command: model set-up and a demo of the chat model."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from langchain_pad.models import DEFAULT_MODEL

_DEMO_QUESTIONS = (
    "Explain why the sky is blue.",
    "Give me one tip for learning a new language.",
)


def _cmd_models_convert(args: argparse.Namespace) -> int:
    from langchain_pad.models import convert_embedded_model

    path = convert_embedded_model(force=args.force)
    print(f"{DEFAULT_MODEL} is ready at {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.panel import Panel

    from langchain_pad import PADChatModel
    from langchain_pad.models import load_model

    console = Console()
    console.print(f"[bold]langchain-pad demo[/bold]: model [cyan]{args.model}[/cyan]")
    started = time.perf_counter()
    load_model(args.model)
    console.print(f"model loaded in {time.perf_counter() - started:.1f} s")
    llm = PADChatModel(model=args.model, max_tokens=args.max_tokens)

    question = args.question or _DEMO_QUESTIONS[0]
    console.print(Panel(question, title="streaming one answer", border_style="cyan"))
    started = time.perf_counter()
    tokens = 0
    for chunk in llm.stream(question):
        console.print(chunk.content, end="", soft_wrap=True, highlight=False)
        if chunk.usage_metadata:
            tokens = chunk.usage_metadata["output_tokens"]
    elapsed = time.perf_counter() - started
    rate = tokens / elapsed
    console.print(f"\n[dim]{tokens} tokens in {elapsed:.1f} s ({rate:.1f} tokens/s)[/dim]")

    console.print(Panel("\n".join(_DEMO_QUESTIONS), title="two questions, one batch"))
    started = time.perf_counter()
    answers = llm.batch(list(_DEMO_QUESTIONS))
    elapsed = time.perf_counter() - started
    for q, a in zip(_DEMO_QUESTIONS, answers, strict=True):
        console.print(Panel(str(a.content), title=q, border_style="green"))
    total = sum(a.usage_metadata["output_tokens"] for a in answers if a.usage_metadata)
    console.print(f"[dim]{total} tokens in {elapsed:.1f} s, decoded together[/dim]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="langchain-pad",
        description="Personalized decoding-time alignment (PAD) for LangChain.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="stream and batch a few answers from the model")
    demo.add_argument("--model", default=DEFAULT_MODEL, help="model name, hub id or directory")
    demo.add_argument("--max-tokens", type=int, default=96)
    demo.add_argument("--question", default=None, help="ask this instead of the demo question")
    demo.set_defaults(handler=_cmd_demo)

    models = commands.add_parser("models", help="manage local models")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    convert = model_commands.add_parser(
        "convert", help=f"convert the embedded {DEFAULT_MODEL} into the cache (done on first use)"
    )
    convert.add_argument("--force", action="store_true", help="rebuild even if already converted")
    convert.set_defaults(handler=_cmd_models_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from langchain_pad.models import ModelLoadError

    try:
        code: int = args.handler(args)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
