"""The ``langchain-pad`` command: model set-up and a demo of the chat model."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def _demo_users() -> tuple[list[str], dict[str, dict[str, float]]]:
    """Two users built from the shipped anchor profiles, on opposite poles."""
    import json

    from langchain_pad.reward_models import default_reward_model_path

    anchors = json.loads((default_reward_model_path() / "anchors.json").read_text())
    axes: list[str] = anchors["axes"]
    by_name = {a["name"]: a["weights"] for a in anchors["anchors"]}

    def combine(*names: str) -> dict[str, float]:
        present = [by_name[n] for n in names if n in by_name]
        return {axis: sum(w[axis] for w in present) for axis in axes}

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

    question = args.question or _DEMO_QUESTIONS[0]
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


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from langchain_pad.datagen import GenerationSettings, generate_dataset

    manifest = generate_dataset(
        args.out,
        axes=args.axes,
        prompts_path=args.prompts,
        settings=GenerationSettings(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
            batch_size=args.batch_size,
        ),
        model_name=args.model,
        dataset_version=args.version,
        limit=args.limit,
        force=args.force,
    )
    print(
        f"dataset v{manifest.dataset_version} written to {args.out} "
        f"in {manifest.wall_seconds:.0f} s"
    )
    for name, counts in manifest.axes.items():
        print(
            f"  {name:16s} kept {counts.pairs_kept:4d}/{counts.prompts} pairs "
            f"(filtered {counts.filter_rate:.0%}; train {counts.train_pairs}, "
            f"held-out {counts.heldout_pairs}; mean {counts.judge} gap {counts.mean_gap:.2f})"
        )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from langchain_pad.training.pipeline import TrainSettings, train_reward_model

    settings = TrainSettings(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        beta=args.beta,
        adapted_layers=args.adapted_layers,
        seed=args.seed,
        max_train_pairs_per_axis=args.max_pairs_per_axis,
    )
    metrics = train_reward_model(
        args.data, args.out, settings=settings, checkpoint_dir=args.checkpoint_dir
    )
    print(f"reward model written to {args.out} in {metrics['wall_seconds']:.0f} s")
    for axis in metrics["axes"]:
        status = "shipped" if axis["shipped"] else f"NOT shipped ({axis['reason']})"
        print(
            f"  {axis['name']:16s} held-out accuracy {axis['heldout_accuracy']:.2f} "
            f"on {axis['heldout_pairs']} pairs (train {axis['train_accuracy']:.2f}): {status}"
        )
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
    demo.add_argument("--html", default="pad_demo.html", help="where to save the reward view")
    demo.set_defaults(handler=_cmd_demo)

    data = commands.add_parser("data", help="preference data for training reward models")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    generate = data_commands.add_parser(
        "generate", help="sample contrasting answers per axis and keep judge-confirmed pairs"
    )
    generate.add_argument("--out", required=True, help="dataset directory to write (resumable)")
    generate.add_argument("--axes", nargs="+", default=None, help="axis names (default: all)")
    generate.add_argument("--prompts", default=None, help="prompt set JSON (default: built-in)")
    generate.add_argument("--model", default=DEFAULT_MODEL)
    generate.add_argument("--max-new-tokens", type=int, default=72)
    generate.add_argument("--temperature", type=float, default=0.8)
    generate.add_argument("--top-p", type=float, default=0.95)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--batch-size", type=int, default=32)
    generate.add_argument("--version", default="1", help="dataset version recorded in the manifest")
    generate.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    generate.add_argument("--force", action="store_true", help="discard samples already there")
    generate.set_defaults(handler=_cmd_data_generate)

    train = commands.add_parser(
        "train", help="train a PersRM (stage 1) on a preference dataset and ship what learned"
    )
    train.add_argument("--data", required=True, help="dataset directory (data generate --out)")
    train.add_argument("--out", required=True, help="PersRM directory to write")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--learning-rate", type=float, default=2e-5)
    train.add_argument("--beta", type=float, default=0.1)
    train.add_argument("--adapted-layers", type=int, default=4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-pairs-per-axis", type=int, default=None)
    train.add_argument("--checkpoint-dir", default=None, help="resume from / checkpoint to here")
    train.set_defaults(handler=_cmd_train)

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
