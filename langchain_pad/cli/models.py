"""``langchain-pad models``: local models (the embedded default's conversion)."""

from __future__ import annotations

import argparse

from langchain_pad.models import DEFAULT_MODEL


def _cmd_convert(args: argparse.Namespace) -> int:
    from langchain_pad.models import convert_embedded_model

    path = convert_embedded_model(force=args.force)
    print(f"{DEFAULT_MODEL} is ready at {path}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser("models", help="manage local models")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    convert = model_commands.add_parser(
        "convert", help=f"convert the embedded {DEFAULT_MODEL} into the cache (done on first use)"
    )
    convert.add_argument("--force", action="store_true", help="rebuild even if already converted")
    convert.set_defaults(handler=_cmd_convert)
