"""The preference axes of langchain-pad's default reward model.

An axis is a direction a user can ask the answers to move in, with two named poles.
A positive weight ``w_p[axis]`` pushes decoding towards the ``high`` pole, a negative one
towards the ``low`` pole. Each pole carries the system prompt used to sample contrasting
answers for training data, and each axis names the automatic judge that checks that a
pair really moved in the intended direction (and that the alignment benchmark scores).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pole:
    name: str
    description: str
    """What a user who wants this pole asks for, in plain words."""
    system_prompt: str
    """Instruction given to the base model to sample an answer at this pole."""


@dataclass(frozen=True)
class PreferenceAxis:
    name: str
    low: Pole
    high: Pole
    judge: str
    """Name of the judge in ``langchain_pad.judges`` whose score rises towards ``high``."""
    min_gap: float
    """Smallest judge difference (high minus low) for a sampled pair to be kept."""
    second_judge: str | None = None
    """An optional second judge (another lexicon or method) that must agree in direction
    before a pair is kept: one judge alone passes pairs that moved for the wrong reason
    (VADER scores a cheerful topic, not a friendly tone)."""
    second_min_gap: float = 0.0
    """Smallest second-judge difference (high minus low) for a pair to be kept."""
    eval_new_tokens: int = 96
    """Answer length at which the judge is read when anchors are calibrated and PAD is
    benchmarked. A length judge needs answers the base model can finish: read at a
    budget the base model always fills, "longer" would only count words per token."""

    def pole(self, name: str) -> Pole:
        for pole in (self.low, self.high):
            if pole.name == name:
                return pole
        raise KeyError(f"axis {self.name!r} has poles {self.low.name!r} and {self.high.name!r}.")

    def sign(self, pole_name: str) -> int:
        """+1 for the high pole, -1 for the low pole."""
        return 1 if self.pole(pole_name) is self.high else -1


DEFAULT_AXES: tuple[PreferenceAxis, ...] = (
    PreferenceAxis(
        name="expertise",
        low=Pole(
            "elementary",
            "Answers an elementary school student can easily understand.",
            "Explain it so that a six-year-old child can understand. Use short sentences, "
            "simple everyday words and a friendly example. Avoid all technical terms.",
        ),
        high=Pole(
            "expert",
            "Answers only a PhD student in the field could understand.",
            "Answer as an expert writing for PhD-level specialists in the field. Use precise "
            "technical terminology, formal academic language and domain-specific detail.",
        ),
        judge="reading_grade",
        min_gap=2.0,
    ),
    PreferenceAxis(
        name="informativeness",
        low=Pole(
            "concise",
            "Concise answers that get to the point without being verbose.",
            "Answer in one short sentence. Be concise and to the point.",
        ),
        high=Pole(
            "thorough",
            "Very informative answers that leave out no background information.",
            "Give a thorough, detailed answer that covers the background, the key facts, "
            "examples and practical details. Do not leave anything out.",
        ),
        judge="log_words",
        min_gap=0.4,
        # SmolLM2-135M's greedy answers run 200-300 tokens; most end before 384
        eval_new_tokens=384,
    ),
    PreferenceAxis(
        name="style",
        low=Pole(
            "blunt",
            "Blunt, cold, unfriendly answers with no pleasantries.",
            "Answer in a cold, blunt and unfriendly tone. Be curt and dismissive. "
            "No greetings, no pleasantries, no jokes, no encouragement.",
        ),
        high=Pole(
            "warm",
            "Friendly, warm, witty answers, like a close friend.",
            "Answer like a warm, cheerful close friend: friendly, enthusiastic, "
            "encouraging and funny, with a little joke.",
        ),
        judge="sentiment",
        min_gap=0.3,
        # per-word share: 0.01 is about one more warm (or one fewer cold) word in 60-100
        second_judge="warmth",
        second_min_gap=0.01,
    ),
    PreferenceAxis(
        name="structure",
        low=Pole(
            "prose",
            "Answers in flowing paragraphs, without lists.",
            "Answer in flowing prose paragraphs only. Do not use lists, bullet points, "
            "numbered points or headings.",
        ),
        high=Pole(
            "structured",
            "Answers organized as a bulleted list of short points.",
            "Answer as a bulleted list of short points: start each point on a new line "
            "with '- '. No introduction paragraph.",
        ),
        judge="list_share",
        min_gap=0.5,
    ),
)


def axes_by_name(names: list[str] | None = None) -> list[PreferenceAxis]:
    """The default axes, or the named subset in the given order."""
    if names is None:
        return list(DEFAULT_AXES)
    known = {axis.name: axis for axis in DEFAULT_AXES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown axis name(s) {unknown}; known axes: {sorted(known)}.")
    return [known[n] for n in names]
