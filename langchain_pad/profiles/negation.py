"""Words a preference turns down: negation and contrast scopes for the lexical ranker.

A bag of words reads "No need to dumb it down" and "Dumb it down for me" as the same
three cues, so which pole "dumb it down" names is decided by which anchor happened to
use it more. Sentiment analysis met the same problem long ago, and its standard fix is
cheap: every word after a negation cue, up to the next punctuation mark, is marked as
negated (``not_dumb not_it not_down``), so the negated and the plain phrase become
different features (Das & Chen 2001; Pang, Lee & Vaithyanathan 2002; the cue list is
the usual one: *not*, *no*, *never*, *nothing*, *without*, every *n't*).

A preference says what it turns down in two more ways, and both are marked the same:

- an imperative of refusal: *skip* the basics, *avoid* jargon;
- a contrast, where what follows is the rejected side: thoroughness *over* brevity,
  analogies *instead of* technical terms, depth *rather than* brevity.

Words are also reduced to their stems (the Snowball English stemmer, the one Sphinx's
search uses): a preference's cue is often a form the anchors never wrote, "technical
rigor over accessibility" against the anchors' "accessible", and as separate words the
two share no feature. Stemmed, they are one ("access"), in a plain and in a negated
scope alike.

Only the lexical model reads these tokens; the sentence embedding is unchanged.
"""

from __future__ import annotations

import re

import snowballstemmer

__all__ = ["NEGATED_PREFIX", "flipped", "negation_tokens"]

NEGATED_PREFIX = "not_"
"""What a word in a negated or rejected scope is prefixed with."""

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.,;:!?()\u2013\u2014]|\s-\s")
"""Words (with one apostrophe part: don't, i'm) and the marks that end a scope."""

_NEGATIONS = frozenset(
    {
        "no",
        "not",
        "never",
        "nothing",
        "none",
        "nor",
        "nobody",
        "nowhere",
        "without",
        "cannot",
        "dont",
        "doesnt",
        "didnt",
        "isnt",
        "arent",
        "wont",
        "cant",
        "shouldnt",
        "wouldnt",
        "couldnt",
    }
)
"""Cues that negate what follows them (every word ending in ``n't`` is one too)."""

_REFUSALS = frozenset({"skip", "avoid", "over"})
"""Imperatives of refusal, and *over* of "X over Y": what follows is turned down."""

_PAIRED = {"than": "rather", "of": "instead"}
"""Two-word contrasts: *rather than*, *instead of* (the second word opens the scope)."""


def negation_tokens(text: str, *, stem: bool = True) -> list[str]:
    """The words of ``text`` (lowercased, two letters or more, stemmed unless ``stem`` is
    off), those in a negated or rejected scope prefixed with :data:`NEGATED_PREFIX`.

    A scope opens after a cue and ends at the next punctuation mark or dash; a cue
    inside a scope does not flip it back (double negation is rare in preferences and
    "no, not that" reads as one refusal).
    """
    # a stemmer object keeps the word it works on: one per call, so threads share none
    stemmer = snowballstemmer.stemmer("english") if stem else None
    words: list[str] = []
    negated = False
    previous = ""
    for token in _TOKEN.findall(text.lower()):
        if not token[0].isalnum():  # punctuation: the scope ends here
            negated, previous = False, ""
            continue
        cue = (
            token in _NEGATIONS
            or token.endswith("n't")
            or token in _REFUSALS
            or _PAIRED.get(token) == previous
        )
        if len(token) >= 2:
            word = stemmer.stemWord(token) if stemmer is not None else token
            words.append(NEGATED_PREFIX + word if negated else word)
        if cue:
            negated = True
        previous = token
    return words


def flipped(tokens: list[str]) -> list[str]:
    """``tokens`` with every word's scope reversed: negated words plain, plain ones negated."""
    n = len(NEGATED_PREFIX)
    return [t[n:] if t.startswith(NEGATED_PREFIX) else NEGATED_PREFIX + t for t in tokens]
