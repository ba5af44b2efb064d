"""The model card (``README.md``) written beside a trained PersRM's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CARD_FILE", "model_card", "write_card"]

CARD_FILE = "README.md"


def write_card(
    out: Path, metrics: dict[str, Any], anchors: dict[str, Any], manifest: dict[str, Any]
) -> None:
    """Write the model card, keeping a hand-written ``## Notes`` section across re-runs."""
    path = out / CARD_FILE
    notes = ""
    if path.is_file():
        text = path.read_text()
        marker = text.find("\n## Notes\n")
        if marker >= 0:
            notes = text[marker + 1 :]
    card = model_card(metrics, anchors, manifest)
    path.write_text(card + ("\n" + notes if notes else ""))


def model_card(metrics: dict[str, Any], anchors: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The README shipped beside the weights: what it is, how it was made, how it scores."""
    lines = [
        "# langchain-pad default PersRM",
        "",
        f"Personalized reward model for PAD decoding on `{metrics['base_model']}` "
        "(the embedded SmolLM2-135M-Instruct). It holds only the trained parts: a copy of the "
        f"base model's top {metrics['settings']['adapted_layers']} layers (the adapter) and one "
        "576x576 head per axis, stored in bfloat16; the frozen base model supplies the rest.",
        "",
        "## Axes",
        "",
        "| axis | low pole (w < 0) | high pole (w > 0) | train pairs | held-out pairs "
        "| held-out accuracy | shipped |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for axis in metrics["axes"]:
        lines.append(
            f"| {axis['name']} | {axis['low']} | {axis['high']} | {axis['train_pairs']} | "
            f"{axis['heldout_pairs']} | {axis['heldout_accuracy']:.2f} | "
            f"{'yes' if axis['shipped'] else 'no: ' + axis['reason']} |"
        )
    lines += [
        "",
        "Held-out accuracy: share of held-out pairs (prompts never trained on) whose "
        "higher-pole answer gets the larger summed reward on that axis, measured on the "
        "saved bfloat16 file.",
        "",
        "## Anchor profiles",
        "",
        "Weights are strengths in pole units; `calibration.json` gives each pole's raw "
        "`w_p` magnitude (what strength +-1 decodes with):",
        "",
        "| anchor | strengths | raw weight of the pole |",
        "|---|---|---:|",
    ]
    table = anchors.get("calibration", {}).get("axes", {})
    for anchor in anchors["anchors"]:
        nonzero = {k: v for k, v in anchor["weights"].items() if v}
        raw = ", ".join(
            f"{table[k]['high' if v > 0 else 'low']:g}" for k, v in nonzero.items() if k in table
        )
        lines.append(f"| {anchor['name']} | {nonzero} | {raw} |")
    s = metrics["settings"]
    lines += [
        "",
        f"Each pole's weight is the one of {list(s['calibration_magnitudes'])} that moved the "
        f"axis judge against plain greedy on the most of {s['calibration_prompts']} training "
        "prompts (ties: the smaller) among those whose answers' perplexity ratio to plain "
        f"greedy stays at most {s['max_perplexity_ratio']} in the median and "
        f"{s.get('max_worst_perplexity_ratio', 'unbounded')} on the worst prompt. A looping "
        "answer (a word "
        "4-gram three or more times) is no win. Answers are read at the axis's judge length "
        "(a length judge needs answers the base model can finish):",
        "",
        "| axis | sign | weight | new tokens | win rate vs greedy | looping "
        "| perplexity ratio median / worst |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for axis in metrics["axes"]:
        for trial in axis.get("calibration", []):
            lines.append(
                f"| {axis['name']} | {trial['sign']:+d} | {trial['magnitude']:g} | "
                f"{trial.get('new_tokens', '')} | {trial['win_rate']:.2f} | "
                f"{trial.get('looping', '')} | {trial['perplexity_ratio']:.2f} / "
                f"{trial.get('perplexity_ratio_worst', float('nan')):.2f} |"
            )
    lines += [
        "",
        "## Data",
        "",
        f"Dataset v{manifest['dataset_version']} (`data/preferences/v{manifest['dataset_version']}`"
        f"), {manifest['prompt_set']['prompts']} prompts of the project's own instruction set "
        f"({manifest['prompt_set']['heldout']} held out by id hash), answers sampled from the "
        "base model under each pole's system prompt "
        f"(T={manifest['settings']['temperature']}, top-p {manifest['settings']['top_p']}, "
        f"{manifest['settings']['max_new_tokens']} new tokens, seed {manifest['seed']}), pairs "
        "kept where the axis judge agreed with the intended direction:",
        "",
        "| axis | judge | min gap | pairs kept | filtered |",
        "|---|---|---:|---:|---:|",
    ]
    for name, counts in manifest["axes"].items():
        lines.append(
            f"| {name} | {counts['judge']} | {counts['min_gap']} | {counts['pairs_kept']} | "
            f"{counts['filter_rate']:.0%} |"
        )
    lines += [
        "",
        "## Training",
        "",
        f"Stage 1 (PAD loss, eq. 8), beta {s['beta']}, AdamW lr {s['learning_rate']}, "
        f"{s['epochs']} epochs, seed {s['seed']}; epoch losses "
        f"{metrics['stage1']['epoch_losses']}; {metrics['stage1']['seconds']:.0f} s of training, "
        f"{metrics['wall_seconds']:.0f} s for the whole `train` command on "
        f"{metrics['machine']['platform']} ({metrics['machine']['cpu_threads']} threads)"
        + (
            f"; the anchor calibration took {metrics['calibration_seconds']:.0f} s"
            + (f" (re-run {metrics['recalibrated']})" if "recalibrated" in metrics else "")
            if "calibration_seconds" in metrics
            else ""
        )
        + ".",
        "",
        "## Reproduce",
        "",
        "```bash",
        "make install",
        "OMP_NUM_THREADS=1 langchain-pad data generate --out data/preferences/v1 "
        "--axes expertise informativeness style --max-new-tokens 64 --temperature 0.7",
        "OMP_NUM_THREADS=1 langchain-pad train --data data/preferences/v1 "
        f"--out langchain_pad/default_persrm --max-pairs-per-axis {s['max_train_pairs_per_axis']}",
        "```",
        "",
    ]
    return "\n".join(lines)
