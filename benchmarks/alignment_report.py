"""How ``alignment.py`` reports a run: the markdown tables, the issue-13 verdict, the plot.

Kept apart from the decoding so a saved ``alignment.json`` (which holds every answer)
can be re-read and re-reported without decoding again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SYSTEMS = ("prompt", "pad", "pad+prompt", "pad_text")


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Alignment benchmark",
        "",
        f"Reward model: `{report['reward_model']}`; greedy; new tokens: "
        f"{report['settings']['max_new_tokens']}; machine: {report['machine']['cpu_model']} "
        f"({report['machine']['torch_threads']} threads), {report['machine']['date']}.",
        f"Guard: repetition penalty {report['settings']['repetition_penalty']}, PAD "
        f"plausibility floor {report['settings']['plausibility']}; PAD strength "
        f"{report['settings']['strength']} at each pole. Win rate: share of prompts where "
        "the system moved the pole's judge in the pole's direction against base greedy "
        "with an answer that does not loop (a word 4-gram 3+ times). ppl x: per-prompt "
        "base-model perplexity of the system's answer over base greedy's, median / mean "
        "/ worst.",
        "",
    ]
    for set_name, result in report["sets"].items():
        lines += [
            f"## {set_name} ({result['prompts']} prompts)",
            "",
            "| axis | pole | judge | prompts | tokens | base ends | base | prompt | PAD "
            "| PAD+prompt | PAD win | prompt win "
            "| PAD+prompt win | PAD+prompt > prompt | loops base / PAD | PAD distinct-2 "
            "| PAD ppl x | PAD+prompt ppl x |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for p in result["poles"]:
            s = p["systems"]
            lines.append(
                f"| {p['axis']} | {p['pole']} | {p['judge']} ({p['direction']}) | "
                f"{p['prompts']} | {p['new_tokens']} | {p['base_finished']:.0%} | "
                f"{p['base_mean']:.2f} | {s['prompt']['mean']:.2f} | {s['pad']['mean']:.2f} | "
                f"{s['pad+prompt']['mean']:.2f} | {s['pad']['win_rate_vs_base']:.0%} | "
                f"{s['prompt']['win_rate_vs_base']:.0%} | "
                f"{s['pad+prompt']['win_rate_vs_base']:.0%} | "
                f"{'yes' if p['pad_plus_prompt_beats_prompt'] else 'no'} "
                f"({p['pad_plus_prompt_win_rate_vs_prompt']:.0%}) | "
                f"{p['base_looping']} / {s['pad']['looping']} | {s['pad']['distinct_2']:.2f} | "
                f"{s['pad']['ppl_ratio_vs_base']:.2f} / {s['pad']['ppl_ratio_mean']:.2f} / "
                f"{s['pad']['ppl_ratio_worst']:.2f} | "
                f"{s['pad+prompt']['ppl_ratio_vs_base']:.2f} |"
            )
        lines += [
            "",
            f"What moved ({set_name}): mean words per sentence and syllables per word, base "
            "and PAD. A reading grade rises with either, so for a reading-grade pole a win "
            "also needs the words to move (syllables per word the pole's way); length poles "
            "also show PAD's wins on the prompts where base greedy ended within the budget.",
            "",
            "| axis | pole | words / sentence base, PAD | syllables / word base, PAD "
            "| PAD win | PAD win, words moved too (reading grade) "
            "| PAD wins where base ends (length) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for p in result["poles"]:
            pad = p["systems"]["pad"]
            won, ended = pad["wins_where_base_ends"]
            graded = p["judge"] == "reading_grade"
            lines.append(
                f"| {p['axis']} | {p['pole']} | {p['base_words_per_sentence']:.1f}, "
                f"{pad['words_per_sentence']:.1f} | {p['base_syllables_per_word']:.3f}, "
                f"{pad['syllables_per_word']:.3f} | {pad['win_rate_vs_base']:.0%} | "
                + (f"{pad['word_win_rate_vs_base']:.0%} | n/a |" if graded else "n/a | ")
                + ("" if graded else f"{won}/{ended} |")
            )
        lines.append("")
        text_poles = [p for p in result["poles"] if "pad_text" in p["systems"]]
        if text_poles:
            lines += [
                f"PAD from free text ({set_name}): each prompt's preference is one of the "
                "pole's blind paraphrases, matched as `preference=` is.",
                "",
                "| axis | pole | paraphrases | rows resolved to the pole | PAD (text) win "
                "| PAD win | loops | ppl x median / worst |",
                "|---|---|---:|---:|---:|---:|---:|---:|",
            ]
            for p in text_poles:
                t, pad = p["systems"]["pad_text"], p["systems"]["pad"]
                lines.append(
                    f"| {p['axis']} | {p['pole']} | {t['paraphrases']} | "
                    f"{t['resolved_to_pole']}/{p['prompts']} | {t['win_rate_vs_base']:.0%} | "
                    f"{pad['win_rate_vs_base']:.0%} | {t['looping']} | "
                    f"{t['ppl_ratio_vs_base']:.2f} / {t['ppl_ratio_worst']:.2f} |"
                )
            lines.append("")
    lines += ["## Verdict (must-show bars of issue 13, on the held-out prompts)", ""]
    for line in report["verdict"]:
        lines.append(f"- {line}")
    lines.append("")
    return "\n".join(lines)


def verdict(report: dict[str, Any]) -> list[str]:
    result = report["sets"]["heldout"]
    lines = []
    for p in result["poles"]:
        for system, label in (("pad", "PAD"), ("pad_text", "PAD from free text")):
            if system not in p["systems"]:
                continue
            pad = p["systems"][system]
            loop_share = pad["looping"] / p["prompts"]
            graded = p["judge"] == "reading_grade"
            win = pad["word_win_rate_vs_base"] if graded else pad["win_rate_vs_base"]
            ok = (
                win >= 0.75
                and loop_share <= 0.10
                and pad["ppl_ratio_vs_base"] <= 1.3
                and pad["ppl_ratio_worst"] <= 2.0
            )
            lines.append(
                f"{p['axis']}:{p['pole']} {label} ({p['prompts']} prompts, "
                f"{p['new_tokens']} tokens): wins without a loop "
                + (
                    f"{win:.0%} with the words moving too ({pad['win_rate_vs_base']:.0%} by "
                    "the grade alone)"
                    if graded
                    else f"{win:.0%}"
                )
                + f" (bar 75%), looping {loop_share:.0%} (bar 10%), "
                f"perplexity x{pad['ppl_ratio_vs_base']:.2f} median (bar 1.3), "
                f"x{pad['ppl_ratio_worst']:.2f} worst (bar 2.0) -> {'meets' if ok else 'MISSES'}"
            )
    beats = sum(p["pad_plus_prompt_beats_prompt"] for p in result["poles"])
    lines.append(
        f"PAD+prompt beats prompt alone on {beats}/{len(result['poles'])} poles "
        f"(bar: a majority) -> {'meets' if beats * 2 > len(result['poles']) else 'MISSES'}"
    )
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(7 * len(sets), 4.5), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=True):
        poles = report["sets"][set_name]["poles"]
        labels = [f"{p['axis']}\n{p['pole']}" for p in poles]
        width = 0.8 / len(SYSTEMS)
        for j, system in enumerate(SYSTEMS):
            values = [p["systems"].get(system, {}).get("win_rate_vs_base", 0) * 100 for p in poles]
            offset = (j - (len(SYSTEMS) - 1) / 2) * width
            ax.bar([i + offset for i in range(len(poles))], values, width, label=system)
        ax.axhline(75, color="black", linestyle="--", linewidth=1, label="75% bar")
        ax.set_xticks(range(len(poles)), labels, fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("% prompts moved in the pole's direction vs base")
        ax.set_title(f"{set_name} ({report['sets'][set_name]['prompts']} prompts)")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
