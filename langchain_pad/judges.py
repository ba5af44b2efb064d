"""Offline automatic judges: cheap text metrics that tell which way an answer moved.

They filter contrastive training pairs (keep a pair only if the judge agrees with the
intended direction) and score the alignment benchmark. Each judge rises towards its
axis's ``high`` pole. All work offline: readability is computed here (textstat needs a
download at run time), sentiment is VADER's lexicon and warmth empath's bundled word
categories, both of which ship with their packages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def syllables(word: str) -> int:
    """Vowel-group count with the usual English corrections (silent e, -le, -ed)."""
    w = word.lower()
    if len(w) <= 3:
        return 1
    count = len(_VOWEL_GROUPS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    if w.endswith("ed") and not w.endswith(("ted", "ded")) and count > 1:
        count -= 1
    return max(count, 1)


def sentence_count(text: str) -> int:
    """Sentences, counting an unterminated tail (answers cut at the token limit) as one."""
    stripped = text.strip()
    if not stripped:
        return 0
    ends = len(_SENTENCE_END.findall(stripped + " "))
    tail = 0 if re.search(r"[.!?]\W*$", stripped) else 1
    lines = sum(1 for line in stripped.splitlines() if _LIST_ITEM.match(line))
    return max(ends + tail, lines, 1)


def reading_grade(text: str) -> float:
    """Flesch-Kincaid grade level: 0.39 words/sentence + 11.8 syllables/word - 15.59."""
    ws = words(text)
    if not ws:
        return 0.0
    sentences = sentence_count(text)
    syl = sum(syllables(w) for w in ws)
    return 0.39 * len(ws) / sentences + 11.8 * syl / len(ws) - 15.59


def words_per_sentence(text: str) -> float:
    """Mean sentence length in words: the half of the reading grade a run-on sentence inflates."""
    ws = words(text)
    return len(ws) / sentence_count(text) if ws else 0.0


def syllables_per_word(text: str) -> float:
    """Mean syllables per word: the reading grade's word half, blind to sentence length.

    A reading grade rises with longer sentences as well as harder words, so one run-on
    sentence can pass for expert prose; this judge moves only with the words chosen.
    """
    ws = words(text)
    return sum(syllables(w) for w in ws) / len(ws) if ws else 0.0


def word_count(text: str) -> float:
    return float(len(words(text)))


def log_words(text: str) -> float:
    """Natural log of 1 + the word count: length differences as ratios, not words."""
    return math.log1p(len(words(text)))


@cache
def _vader() -> Any:
    try:
        from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
            SentimentIntensityAnalyzer,
        )
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the sentiment judge needs vaderSentiment: pip install 'langchain-pad[data]'"
        ) from exc
    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound sentiment in [-1, 1]."""
    return float(_vader().polarity_scores(text)["compound"])


WARM_CATEGORIES = (
    "politeness",
    "cheerfulness",
    "positive_emotion",
    "affection",
    "joy",
    "optimism",
)
"""empath categories of a friendly, warm tone. Not empath's own ``warmth`` category:
that one is physical heat (burn, furnace, thermostat), not a tone."""
COLD_CATEGORIES = (
    "aggression",
    "hate",
    "negative_emotion",
    "anger",
    "disappointment",
    "irritability",
    "rage",
    "disgust",
)


@cache
def _empath_lexicons() -> tuple[frozenset[str], frozenset[str]]:
    """The warm and the cold word sets; a word in both counts for neither.

    Only the bundled lexicon is read: empath's ``create_category`` calls a server.
    """
    try:
        from empath import Empath  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the warmth judge needs empath: pip install 'langchain-pad[data]'"
        ) from exc
    cats: dict[str, list[str]] = Empath().cats
    warm = frozenset(w for c in WARM_CATEGORIES for w in cats[c])
    cold = frozenset(w for c in COLD_CATEGORIES for w in cats[c])
    return warm - cold, cold - warm


def warmth(text: str) -> float:
    """Share of words in empath's warm categories minus the share in its cold ones.

    A second tone judge beside VADER, from another lexicon. Per word, so a longer answer
    is not warmer for its length; each word counts once however many categories hold it.
    In [-1, 1]; 0 for an answer with no words.
    """
    ws = [w.lower() for w in words(text)]
    if not ws:
        return 0.0
    warm, cold = _empath_lexicons()
    return (sum(w in warm for w in ws) - sum(w in cold for w in ws)) / len(ws)


def list_share(text: str) -> float:
    """Share of non-empty lines that are list items (bullets or numbered points)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0
    return sum(1 for line in lines if _LIST_ITEM.match(line)) / len(lines)


JUDGES: dict[str, Callable[[str], float]] = {
    "reading_grade": reading_grade,
    "syllables_per_word": syllables_per_word,
    "words_per_sentence": words_per_sentence,
    "log_words": log_words,
    "word_count": word_count,
    "sentiment": sentiment,
    "warmth": warmth,
    "list_share": list_share,
}


def judge(name: str) -> Callable[[str], float]:
    try:
        return JUDGES[name]
    except KeyError:
        raise ValueError(f"unknown judge {name!r}; known judges: {sorted(JUDGES)}.") from None
