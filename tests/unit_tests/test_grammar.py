from __future__ import annotations

import json

import pytest
import torch

from langchain_pad.engine.grammar import (
    GrammarCompiler,
    GrammarError,
    JSONSchemaGrammar,
    LarkGrammar,
    RegexGrammar,
    batch_allowed_mask,
    json_rule,
)

from ._tokenizers import TINY_EOS_ID, TINY_PAD_ID, tiny_fast_tokenizer

MODEL_VOCAB = 300  # wider than the tokenizer's 264 ids, as real models often are


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_fast_tokenizer()


@pytest.fixture(scope="module")
def compiler(tokenizer):
    return GrammarCompiler(tokenizer, MODEL_VOCAB, eos_token_ids={TINY_EOS_ID})


def drive(grammar, token_ids):
    for token_id in token_ids:
        assert grammar.allowed_mask()[token_id], token_id
        grammar.consume(token_id)


def greedy_walk(grammar, tokenizer, preference, limit=200):
    """Decode by always taking the allowed token with the best made-up score."""
    out: list[int] = []
    while not grammar.is_stopped() and len(out) < limit:
        scores = preference.clone()
        scores[~grammar.allowed_mask()] = float("-inf")
        token_id = int(scores.argmax())
        grammar.consume(token_id)
        if token_id == TINY_EOS_ID:
            break
        out.append(token_id)
    return tokenizer.decode(out)


def test_mask_has_model_width_and_never_allows_ids_beyond_the_tokenizer(compiler):
    grammar = compiler.compile(RegexGrammar(".*"))
    mask = grammar.allowed_mask()
    assert mask.dtype == torch.bool and mask.shape == (MODEL_VOCAB,)
    assert compiler.tokenizer_size == 265
    assert not mask[265:].any()
    assert mask[2:265].sum() > 150  # most bytes may come next (not "\\n", not bad UTF-8)


def test_json_schema_grammar_only_admits_valid_json(compiler, tokenizer):
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    grammar = compiler.compile(JSONSchemaGrammar(schema))
    assert not grammar.is_accepting()
    assert not grammar.allowed_mask()[TINY_EOS_ID]
    drive(grammar, tokenizer.encode('{"ok": true}'))
    assert grammar.is_accepting()
    mask = grammar.allowed_mask()
    assert mask[TINY_EOS_ID]
    assert mask.sum() == 1  # the object is closed: only EOS is left
    assert grammar.is_stopped()
    grammar.consume(TINY_EOS_ID)
    assert grammar.is_stopped()


def test_compact_json_leaves_no_room_for_stray_whitespace(compiler, tokenizer):
    grammar = compiler.compile(JSONSchemaGrammar({"type": "object"}))
    space = tokenizer.convert_tokens_to_ids("Ġ")
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    drive(grammar, tokenizer.encode("{"))
    assert not grammar.allowed_mask()[space] and not grammar.allowed_mask()[newline]
    loose = compiler.compile(JSONSchemaGrammar({"type": "object"}, compact=False))
    drive(loose, tokenizer.encode("{"))
    assert loose.allowed_mask()[space]


def test_forbidden_token_raises_and_names_the_grammar(compiler, tokenizer):
    grammar = compiler.compile(JSONSchemaGrammar({"type": "object", "title": "Person"}))
    with pytest.raises(GrammarError, match="not allowed by the JSON schema 'Person'"):
        grammar.consume(tokenizer.encode("x")[0])
    with pytest.raises(GrammarError, match="not allowed"):
        grammar.consume(290)  # beyond the tokenizer
    drive(grammar, tokenizer.encode("{}"))  # a refused token leaves the state intact


def test_forced_tokens_follow_from_the_grammar(compiler, tokenizer):
    grammar = compiler.compile(LarkGrammar('start: "<call>" /[0-9]+/'))
    forced = grammar.forced_tokens()
    assert tokenizer.decode(forced) == "<call>"
    drive(grammar, forced)
    assert grammar.forced_tokens() == []
    drive(grammar, tokenizer.encode("42"))
    assert grammar.is_accepting() and not grammar.is_stopped()  # more digits may follow


def test_regex_grammar_and_reset(compiler, tokenizer):
    grammar = compiler.compile(RegexGrammar("(yes|no)"))
    drive(grammar, tokenizer.encode("no"))
    assert grammar.is_stopped()
    grammar.reset()
    assert not grammar.is_accepting()
    drive(grammar, tokenizer.encode("yes"))
    assert grammar.is_accepting()


def test_lark_with_json_sub_grammar_and_greedy_walk(compiler, tokenizer):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    grammar = compiler.compile(LarkGrammar(f'start: "<t>" {json_rule(schema)} "</t>"'))
    # A made-up model that would close the object at once, and likes 7 next best.
    preference = torch.zeros(MODEL_VOCAB)
    for char, score in [("}", 3.0), ("7", 2.0), ("<", 1.0)]:
        preference[tokenizer.encode(char)[0]] = score
    preference[TINY_EOS_ID] = 0.5
    text = greedy_walk(grammar, tokenizer, preference)
    assert text == '<t>{"n": 7}</t>'
    assert isinstance(json.loads(text[3:-4])["n"], int)


def test_schema_the_library_cannot_compile_is_a_clear_error_at_compile_time(compiler):
    with pytest.raises(GrammarError, match=r"cannot be compiled.*Unimplemented keys.*not"):
        compiler.validate(JSONSchemaGrammar({"type": "object", "properties": {"a": {"not": {}}}}))
    with pytest.raises(GrammarError, match="Invalid type: color"):
        compiler.compile(JSONSchemaGrammar({"type": "color"}))
    with pytest.raises(GrammarError, match=r"(?s)regex.*unclosed group"):
        compiler.compile(RegexGrammar("a(b"))
    with pytest.raises(GrammarError, match="unknown name"):
        compiler.validate(LarkGrammar("start: nothing_here"))
    assert compiler.validate(JSONSchemaGrammar({"type": "object"}))


def test_batch_mask_leaves_unconstrained_rows_alone(compiler, tokenizer):
    assert batch_allowed_mask([None, None], MODEL_VOCAB) is None
    grammar = compiler.compile(RegexGrammar("a"))
    mask = batch_allowed_mask([None, grammar], MODEL_VOCAB)
    assert mask is not None and mask.shape == (2, MODEL_VOCAB)
    assert mask[0].all()
    assert mask[1].nonzero().flatten().tolist() == tokenizer.encode("a")


def test_mask_is_cached_per_state_and_callers_may_modify_it(compiler, tokenizer):
    grammar = compiler.compile(RegexGrammar("ab"))
    first = grammar.allowed_mask()
    first[:] = False
    assert grammar.allowed_mask().sum() == 1
    grammar.consume(tokenizer.encode("a")[0])
    assert grammar.allowed_mask().nonzero().flatten().tolist() == tokenizer.encode("b")


def test_default_eos_is_the_tokenizers_and_a_slow_tokenizer_is_refused(tokenizer):
    compiler = GrammarCompiler(tokenizer, MODEL_VOCAB)
    assert compiler.eos_token_ids == {TINY_EOS_ID}
    assert TINY_PAD_ID not in compiler.eos_token_ids

    class SlowTokenizer:
        eos_token_id = 1

    with pytest.raises(GrammarError, match="fast"):
        GrammarCompiler(SlowTokenizer(), MODEL_VOCAB)


def test_json_rule_keeps_the_schemas_property_order(compiler, tokenizer):
    schema = {
        "type": "object",
        "properties": {"z": {"const": 1}, "a": {"const": 2}},
        "required": ["z", "a"],
    }
    grammar = compiler.compile(LarkGrammar(f"start: {json_rule(schema)}"))
    drive(grammar, tokenizer.encode('{"z": 1, "a": 2}'))
    assert grammar.is_accepting()


def test_tighten_schema_caps_free_strings_and_closes_objects():
    from langchain_pad.engine.grammar import tighten_schema

    schema = {
        "type": "object",
        "properties": {
            "free": {"type": "string"},
            "color": {"type": "string", "enum": ["red"]},
            "short": {"type": "string", "maxLength": 3},
            "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "inner": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "open": {"type": "object", "properties": {}, "additionalProperties": True},
        },
    }
    tight = tighten_schema(schema, max_string_length=10, close_objects=True)
    props = tight["properties"]
    assert props["free"] == {"type": "string", "maxLength": 10, "minLength": 1}
    assert props["color"] == schema["properties"]["color"]
    assert props["short"] == {"type": "string", "maxLength": 3}
    assert props["maybe"]["anyOf"][0]["maxLength"] == 10
    assert tight["additionalProperties"] is False
    assert props["inner"]["additionalProperties"] is False
    assert props["open"]["additionalProperties"] is True
    assert tighten_schema(schema) == schema and tighten_schema(schema) is not schema


def test_budgeted_integers_get_json_safe_bounds_and_close(compiler, tokenizer):
    from langchain_pad.engine.grammar_specs import MAX_SAFE_INTEGER, tighten_schema

    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "small": {"type": "integer", "maximum": 9},
            "maybe": {"type": ["integer", "null"]},
        },
        "required": ["n"],
    }
    props = tighten_schema(schema, max_string_length=10)["properties"]
    assert (props["n"]["minimum"], props["n"]["maximum"]) == (-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    assert props["small"] == {"type": "integer", "maximum": 9}
    assert props["maybe"]["maximum"] == MAX_SAFE_INTEGER
    assert "maximum" not in tighten_schema(schema)["properties"]["n"]  # no budget: as given
    grammar = compiler.compile(JSONSchemaGrammar(schema, max_string_length=10))
    drive(grammar, tokenizer.encode('{"n": ' + "4" * 16))
    assert not grammar.allowed_mask()[tokenizer.encode("4")[0]]  # a 17th digit would not fit
    drive(grammar, tokenizer.encode("}"))
    assert grammar.is_accepting()


def test_capped_string_closes(compiler, tokenizer):
    grammar = compiler.compile(
        JSONSchemaGrammar(
            {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]},
            max_string_length=2,
        )
    )
    drive(grammar, tokenizer.encode('{"s": "ab'))
    assert tokenizer.encode('"')[0] in grammar.allowed_mask().nonzero().flatten().tolist()
    assert grammar.allowed_mask().sum() == 1  # a third character is not allowed


def test_forced_tokens_include_the_opening_quote_of_a_string_value(compiler, tokenizer):
    schema = {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}
    grammar = compiler.compile(JSONSchemaGrammar(schema))
    forced = grammar.forced_tokens()
    assert tokenizer.decode(forced) == '{"s": "'
    quote = tokenizer.convert_tokens_to_ids('Ġ"')
    assert forced[-1] == quote
    drive(grammar, forced[:-1])
    # a loop that only masks gets the same choice: the quote alone, not '"' + content
    assert grammar.allowed_mask().nonzero().flatten().tolist() == [quote]
    drive(grammar, forced[-1:])
    drive(grammar, tokenizer.encode('x"}'))
    assert grammar.is_accepting()


def test_a_bare_space_that_would_merge_with_the_next_word_is_not_forced(compiler, tokenizer):
    grammar = compiler.compile(JSONSchemaGrammar({"type": "object"}))
    drive(grammar, tokenizer.encode('{"a":'))
    assert grammar.forced_tokens() == []  # " " + "the" is "Ġt", "h", "e": no lone space


def test_eos_only_once_the_output_is_complete(compiler, tokenizer):
    grammar = compiler.compile(JSONSchemaGrammar({"type": "array"}))
    drive(grammar, tokenizer.encode("[1"))
    assert not grammar.is_allowed(TINY_EOS_ID)
    with pytest.raises(GrammarError, match="not allowed"):
        grammar.consume(TINY_EOS_ID)
    drive(grammar, tokenizer.encode("]"))
    assert grammar.is_allowed(TINY_EOS_ID) and grammar.allowed_mask()[TINY_EOS_ID]
    grammar.consume(TINY_EOS_ID)
    assert grammar.is_stopped()
