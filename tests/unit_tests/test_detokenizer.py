from langchain_pad.engine.detokenizer import IncrementalDetokenizer


def stream_text(tokenizer, ids):
    detok = IncrementalDetokenizer(tokenizer, prompt_ids=list(b"prompt "))
    deltas = [detok.push(i) for i in ids]
    return deltas, detok.flush()


def test_multibyte_characters_split_across_tokens(byte_tokenizer):
    text = "héllo 😀 日本"
    deltas, tail = stream_text(byte_tokenizer, list(text.encode()))
    assert "".join(deltas) + tail == text
    assert all("\ufffd" not in d for d in deltas)
    # the emoji is four tokens: three of them release nothing, the fourth releases it
    emoji_start = len("héllo ".encode())
    assert deltas[emoji_start : emoji_start + 4] == ["", "", "", "😀"]


def test_incomplete_character_at_end_is_flushed_as_replacement(byte_tokenizer):
    deltas, tail = stream_text(byte_tokenizer, [*list(b"ok"), 240, 159])
    assert "".join(deltas) == "ok"
    assert tail == "\ufffd"


def test_special_tokens_add_no_text(byte_tokenizer):
    deltas, tail = stream_text(byte_tokenizer, [*b"hi", 256])
    assert deltas == ["h", "i", ""]
    assert tail == ""
