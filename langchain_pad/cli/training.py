"""``langchain-pad train`` and ``calibrate``: a PersRM from a preference dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


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


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from langchain_pad.models import resolve_reward_model
    from langchain_pad.training.pipeline import TrainSettings, recalibrate_anchors

    defaults = TrainSettings()
    for flag, value in (("--prompts", args.prompts), ("--new-tokens", args.new_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}.")
    if any(not (m > 0 and m < float("inf")) for m in args.magnitudes or ()):
        raise ValueError(f"--magnitudes must be finite numbers > 0, got {args.magnitudes}.")
    for flag, ratio in (
        ("--max-perplexity-ratio", args.max_perplexity_ratio),
        ("--max-worst-perplexity-ratio", args.max_worst_perplexity_ratio),
    ):
        if ratio is not None and not (ratio > 0 and ratio < float("inf")):
            raise ValueError(f"{flag} must be a finite number > 0, got {ratio}.")
    settings = TrainSettings(
        calibration_prompts=args.prompts or defaults.calibration_prompts,
        calibration_magnitudes=tuple(args.magnitudes or defaults.calibration_magnitudes),
        calibration_new_tokens=args.new_tokens,
        max_perplexity_ratio=(
            defaults.max_perplexity_ratio
            if args.max_perplexity_ratio is None
            else args.max_perplexity_ratio
        ),
        max_worst_perplexity_ratio=(
            defaults.max_worst_perplexity_ratio
            if args.max_worst_perplexity_ratio is None
            else args.max_worst_perplexity_ratio
        ),
    )
    directory = resolve_reward_model(args.reward_model)
    metrics = recalibrate_anchors(directory, args.data, settings=settings)
    print(f"anchors of {directory} recalibrated in {metrics['calibration_seconds']:.0f} s")
    for axis in metrics["axes"]:
        for trial in axis["calibration"]:
            print(
                f"  {axis['name']:16s} {trial['sign']:+d} x {trial['magnitude']:<5g} "
                f"win {trial['win_rate']:.2f}  looping {trial.get('looping', '-')}  "
                f"perplexity x{trial['perplexity_ratio']:.2f} (worst "
                f"x{trial.get('perplexity_ratio_worst', float('nan')):.2f})"
            )
    anchors = json.loads((Path(directory) / "anchors.json").read_text())
    for anchor in anchors["anchors"]:
        print(f"  {anchor['name']:28s} {anchor['weights']}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

    calibrate = commands.add_parser(
        "calibrate",
        help="re-pick a trained PersRM's anchor weights (what train's last step does)",
    )
    calibrate.add_argument(
        "--reward-model", default="default", help="PersRM directory, or 'default'"
    )
    calibrate.add_argument("--data", required=True, help="the dataset it was trained on")
    calibrate.add_argument("--prompts", type=int, default=None, help="default: 16")
    calibrate.add_argument(
        "--magnitudes", type=float, nargs="+", default=None, help="weights to try per pole"
    )
    calibrate.add_argument(
        "--new-tokens",
        type=int,
        default=None,
        help="answer length for every axis (default: each axis's judge length)",
    )
    calibrate.add_argument(
        "--max-perplexity-ratio", type=float, default=None, help="median; default: 1.3"
    )
    calibrate.add_argument(
        "--max-worst-perplexity-ratio",
        type=float,
        default=None,
        help="least fluent prompt; default: 2.0",
    )
    calibrate.set_defaults(handler=_cmd_calibrate)
