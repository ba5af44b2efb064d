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


# ---------------------------------------------------------------- serve (OpenAI-compatible)


def _cmd_serve(args: argparse.Namespace) -> int:
    from langchain_pad.integrations.server import ServerSettings, serve

    store = None
    if args.profiles is not None:
        from langchain_pad.profiles import SQLiteProfileStore

        store = SQLiteProfileStore(args.profiles)
    settings = ServerSettings(
        model=args.model,
        reward_model=None if args.reward_model == "none" else args.reward_model,
        served_model_name=args.served_model_name,
        dtype=args.dtype,
        default_max_tokens=args.default_max_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_request_bytes=args.max_request_bytes,
        max_batch_size=args.max_batch_size,
        batch_window=args.batch_window,
        profile_store=store,
        unknown_user=args.unknown_user,
    )
    serve(settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _add_serve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="serve the model over an OpenAI-compatible HTTP API (needs the server extra)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", default=DEFAULT_MODEL, help="model name, hub id or directory")
    serve.add_argument(
        "--reward-model", default="default", help="PersRM directory, 'default' or 'none'"
    )
    serve.add_argument("--served-model-name", default=None, help="name clients pass as model")
    serve.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    serve.add_argument("--default-max-tokens", type=int, default=256)
    serve.add_argument("--max-tokens-limit", type=int, default=1024)
    serve.add_argument("--max-request-bytes", type=int, default=1 << 20)
    serve.add_argument("--max-batch-size", type=int, default=32)
    serve.add_argument(
        "--batch-window", type=float, default=0.02, help="seconds a batch waits for more requests"
    )
    serve.add_argument("--profiles", default=None, help="SQLite profile store for user ids")
    serve.add_argument("--unknown-user", choices=["fallback", "error"], default="fallback")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_cmd_serve)


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
    _add_serve_command(commands)
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
