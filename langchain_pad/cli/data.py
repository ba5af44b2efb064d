"""``langchain-pad data``: preference data for training reward models."""

from __future__ import annotations

import argparse

from langchain_pad.models import DEFAULT_MODEL


def _cmd_generate(args: argparse.Namespace) -> int:
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
            samples_per_pole=args.samples_per_pole,
            judge_guidance=args.judge_guidance,
            pole_prompts=not args.no_pole_prompts,
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
        if counts.second_judge is not None:
            print(
                f"  {'':16s} {counts.second_judge} agreed with {counts.pairs_kept} of "
                f"{counts.first_judge_pairs} pairs the {counts.judge} judge passed"
            )
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    generate.add_argument(
        "--samples-per-pole",
        type=int,
        default=1,
        help="answers sampled per pole per prompt; the most extreme pair is kept (best-of-N)",
    )
    generate.add_argument(
        "--judge-guidance",
        type=float,
        default=0.0,
        help="sample each pole with the axis judge's gain per token candidate as a reward, "
        "at this strength (0: none)",
    )
    generate.add_argument(
        "--no-pole-prompts",
        action="store_true",
        help="with --judge-guidance: answer the plain prompt at both poles (no system prompt)",
    )
    generate.add_argument("--version", default="1", help="dataset version recorded in the manifest")
    generate.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    generate.add_argument("--force", action="store_true", help="discard samples already there")
    generate.set_defaults(handler=_cmd_generate)
