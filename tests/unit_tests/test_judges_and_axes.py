from __future__ import annotations

import math

import pytest

from langchain_pad.axes import DEFAULT_AXES, axes_by_name
from langchain_pad.judges import (
    judge,
    list_share,
    log_words,
    reading_grade,
    sentence_count,
    sentiment,
    syllables,
    syllables_per_word,
    warmth,
    words_per_sentence,
)


def test_syllables_of_common_words():
    assert [syllables(w) for w in ["cat", "table", "banana", "made", "jumped", "education"]] == [
        1,
        2,
        3,
        1,
        1,
        4,
    ]


def test_reading_grade_orders_simple_below_technical():
    simple = "The cat sat on the mat. It was a big cat. It was happy."
    technical = (
        "Photosynthesis constitutes the biochemical transformation of electromagnetic "
        "radiation into chemical potential energy, mediated by chlorophyll-containing organelles."
    )
    assert reading_grade(simple) < 3 < 15 < reading_grade(technical)
    assert reading_grade("") == 0.0


def test_a_cut_off_answer_counts_its_tail_as_a_sentence():
    assert sentence_count("One sentence. Then a tail without an end") == 2
    assert sentence_count("- a\n- b\n- c") == 3


def test_a_run_on_sentence_raises_the_grade_but_not_the_word_judge():
    short = "The train is slow. The plane is fast. Both cost money."
    run_on = "The train is slow and the plane is fast and both cost money and take time."
    assert words_per_sentence(short) == pytest.approx(11 / 3)
    assert words_per_sentence(run_on) == 16
    assert reading_grade(run_on) > reading_grade(short) + 4
    assert syllables_per_word(run_on) == pytest.approx(17 / 16)  # "money": 2
    assert syllables_per_word(short) == pytest.approx(12 / 11)  # same words, shorter sentences
    assert syllables_per_word("") == words_per_sentence("") == 0.0


def test_length_and_list_judges():
    assert log_words("one two three") == pytest.approx(math.log(4))
    assert list_share("Intro\n- one\n- two\n3. three") == pytest.approx(0.75)
    assert list_share("") == 0.0


def test_sentiment_sign():
    assert sentiment("I love this, it is wonderful and fun!") > 0.5
    assert sentiment("This is terrible, stupid and useless.") < -0.5


def test_warmth_sign_and_bounds():
    assert warmth("I am so delighted and thrilled, what a wonderful, joyful question!") > 0.2
    assert warmth("That is a stupid, annoying question and I hate it.") < -0.1
    assert warmth("") == 0.0
    assert warmth("The cat sat on the mat.") == 0.0
    assert warmth("delighted") == 1.0


def test_warmth_is_per_word_so_length_does_not_dominate():
    short = "What a wonderful question."
    long = short + " The answer is that water boils at one hundred degrees." * 5
    assert warmth(short) > warmth(long) > 0
    assert warmth(short * 4) == pytest.approx(warmth(short))


def test_warmth_is_a_tone_not_a_temperature():
    # empath's own "warmth" category is physical heat; it is not one of the judge's
    assert warmth("The furnace and the thermostat keep the boiling air balmy.") == 0.0


def test_every_axis_names_a_known_judge_and_distinct_poles():
    for axis in DEFAULT_AXES:
        assert judge(axis.judge)("some text.") is not None
        if axis.second_judge is not None:
            assert judge(axis.second_judge)("some text.") is not None
            assert axis.second_judge != axis.judge
        assert axis.low.name != axis.high.name
        assert axis.sign(axis.high.name) == 1 and axis.sign(axis.low.name) == -1


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown judge 'nope'"):
        judge("nope")
    with pytest.raises(ValueError, match=r"unknown axis name\(s\) \['humour'\]"):
        axes_by_name(["expertise", "humour"])
    with pytest.raises(KeyError, match="has poles"):
        DEFAULT_AXES[0].pole("nope")
