"""A tiny byte-level BPE fast tokenizer, built in memory (no files, no hub).

Grammar tests need a real Rust-backed tokenizer (llguidance reads its JSON), but not
the 49k-token vocabulary of the embedded model: this one has 265 tokens and builds in
milliseconds.
"""

from __future__ import annotations

from typing import Any

TINY_EOS_ID = 1
TINY_PAD_ID = 0


def tiny_fast_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": TINY_PAD_ID, "<|im_end|>": TINY_EOS_ID}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    merges = [("{", '"'), ('"', ":"), ("Ġ", '"'), ("t", "r"), ("tr", "u"), ("tru", "e")]
    merges.append(("Ġ", "t"))  # so that a bare space is not a token of its own before "the"
    for left, right in merges:
        vocab[left + right] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
