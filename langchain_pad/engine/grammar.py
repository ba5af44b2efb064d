"""Per-row grammar constraints: which tokens may come next, from llguidance.

A constrained row (a tool call, a structured answer) carries a :class:`TokenGrammar`.
Each step the loop asks it for the allowed-token mask *before* the top-K candidates are
taken, so PAD only ever scores tokens the grammar allows; after the pick it tells the
grammar which token was chosen; when the grammar has ended the row finishes.

How a loop uses it, per step, for a row with a grammar ``g``:

1. ``mask = g.allowed_mask()`` and ``logits[~mask] = -inf`` on the full vocabulary,
   anywhere before the top-K candidates are taken (so PAD only scores allowed tokens;
   masking before the log-softmax renormalizes the reported log-probs over the allowed
   tokens). EOS is in the mask exactly when ``g`` accepts;
2. pick a token as usual, then ``g.consume(token)``; if it is an EOS id, finish the
   row ("stop");
3. if ``g.is_stopped()`` (nothing but EOS can follow), finish the row now ("stop")
   without another forward pass;
4. optionally fast-forward: ``forced = g.forced_tokens()``; ``g.consume(t)`` for each,
   emit them as the row's next tokens, and feed ``[token, *forced]`` in the next
   forward (a multi-token step). Without fast-forwarding, the masks of the next steps
   allow exactly one token each, so a loop that ignores ``forced_tokens`` is still
   correct, only slower; it may also skip PAD scoring when the mask has one token.

Why llguidance: a 3 MB abi3 wheel with no Python dependencies and a plain numpy path;
one Earley parser over a token trie serves JSON schema, regex and Lark with ``%json``
sub-grammars; a mask for SmolLM2's 49k vocabulary costs 0.03-0.4 ms per step on one
core, unpacking included (regex 0.03-0.06, a tool call 0.08-0.33, a JSON schema
0.2-0.37 ms; consume 0.01-0.02 ms), next to ~35 ms for a decoding step. xgrammar
(0.2.9) would pull torch, transformers and triton into the install and targets GPU
kernels; outlines-core builds its index from ``Vocabulary.from_pretrained``, which
downloads from the hub, and compiles a regex automaton per schema up front (slow for
large schemas, no context-free grammars for the tool-call envelope).

Heavy libraries (llguidance, numpy, torch) are imported inside functions: importing
this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import llguidance
    import numpy as np
    import torch
    from numpy.typing import NDArray

__all__ = [
    "GrammarCompiler",
    "GrammarError",
    "GrammarSpec",
    "JSONSchemaGrammar",
    "LarkGrammar",
    "RegexGrammar",
    "TokenGrammar",
    "batch_allowed_mask",
    "json_rule",
    "json_schema_error",
    "tighten_schema",
]

from langchain_pad.engine.grammar_specs import (
    GrammarError,
    GrammarSpec,
    JSONSchemaGrammar,
    LarkGrammar,
    RegexGrammar,
    json_rule,
    json_schema_error,
    tighten_schema,
)


class GrammarCompiler:
    """Turns grammar specs into per-row :class:`TokenGrammar` states, for one tokenizer.

    Building the llguidance tokenizer (its token trie) costs about half a second, so
    build one compiler per tokenizer and keep it (the runtime owns it).

    Example::

        compiler = GrammarCompiler(tokenizer, model.config.vocab_size, eos_token_ids={2})
        grammar = compiler.compile(JSONSchemaGrammar({"type": "object"}))
        logits[~grammar.allowed_mask()] = float("-inf")
    """

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        *,
        eos_token_ids: Iterable[int] | None = None,
    ) -> None:
        """Wrap a Hugging Face fast tokenizer.

        Args:
            tokenizer: a fast (Rust-backed) Hugging Face tokenizer.
            vocab_size: the model's logits width; ids at or beyond the tokenizer's own
                size are never allowed.
            eos_token_ids: the ids that end a row (the engine's EOS set); a grammar in
                an accepting state allows all of them. Default: the tokenizer's EOS.
        """
        import llguidance.hf

        eos = sorted(set(eos_token_ids)) if eos_token_ids is not None else None
        if eos is None and getattr(tokenizer, "eos_token_id", None) is not None:
            eos = [int(tokenizer.eos_token_id)]
        if not eos:
            raise GrammarError("A grammar needs at least one EOS token id to end a row.")
        try:
            self._ll: llguidance.LLTokenizer = llguidance.hf.from_tokenizer(
                tokenizer, eos_token=eos
            )
        except ValueError as exc:
            raise GrammarError(
                f"Grammar-constrained decoding needs a fast (Rust-backed) tokenizer: {exc}"
            ) from exc
        self.vocab_size = int(vocab_size)
        self.eos_token_ids: frozenset[int] = frozenset(eos)
        self._single_tokens: dict[bytes, int | None] = {}

    @property
    def tokenizer_size(self) -> int:
        """How many token ids the grammar knows (llguidance's vocabulary)."""
        return int(self._ll.vocab_size)

    def validate(self, spec: GrammarSpec) -> str:
        """Check that ``spec`` compiles; return its grammar text. Raises :class:`GrammarError`.

        For bind time (``bind_tools``, ``with_structured_output``): no row state is built.
        """
        import llguidance

        source = _source(spec)
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(source, self._ll)
        if is_error:
            raise GrammarError(_compile_message(spec, messages[0] if messages else ""))
        return source

    def compile(self, spec: GrammarSpec) -> TokenGrammar:
        """A fresh per-row grammar state for ``spec``. Raises :class:`GrammarError`."""
        import llguidance

        matcher = llguidance.LLMatcher(self._ll, _source(spec), log_level=0)
        if matcher.is_error():
            raise GrammarError(_compile_message(spec, matcher.get_error()))
        return TokenGrammar(
            matcher,
            self.vocab_size,
            self.tokenizer_size,
            spec.describe(),
            single_token=self._single_token,
            eos_token_ids=self.eos_token_ids,
        )

    def _single_token(self, text: bytes) -> int | None:
        """The token that forced ``text`` is, when it opens a string and stays separate.

        Only text that ends in the quote opening a string value qualifies, and only when
        the tokenizer keeps it one token before ordinary words: ``b' "'`` is one token
        before "a", "Paris" or "1" in SmolLM2's vocabulary, so forcing it leaves the
        tokenization as the model knows it. Other forced text (``b"{"``, which merges
        with a following quote, ``b" "``, which merges with a word) is left to
        llguidance. Cached per compiler.
        """
        if text not in self._single_tokens:
            alone = self._ll.tokenize_bytes(text) if text.endswith(b'"') else []
            token = alone[0] if len(alone) == 1 else None
            for probe in _PROBES:
                if token is None:
                    break
                if self._ll.tokenize_bytes(text + probe)[:1] != [token]:
                    token = None
            self._single_tokens[text] = token
        return self._single_tokens[text]


_PROBES = (b"a", b"A", b"1", b"Paris", b"the")
"""Ordinary continuations used to check that forced text stays a token of its own."""


def _source(spec: GrammarSpec) -> str:
    try:
        return spec.source()
    except ValueError as exc:  # llguidance refuses a schema that is not a JSON object
        raise GrammarError(_compile_message(spec, str(exc))) from exc


def _compile_message(spec: GrammarSpec, detail: str) -> str:
    detail = detail.strip() or "no detail given"
    return f"The {spec.describe()} cannot be compiled into a decoding grammar: {detail}"


# ---------------------------------------------------------------------------- row state


class TokenGrammar:
    """The grammar state of one row: the next allowed tokens, advanced token by token.

    Per step: ``allowed_mask()`` before choosing, ``consume(token)`` after. When the
    grammar accepts, the EOS ids become allowed; when it ``is_stopped()`` nothing but
    EOS is allowed and the row should finish. ``forced_tokens()`` lists tokens the
    grammar dictates from here (no choice left), which a loop may append without
    scoring.
    """

    def __init__(
        self,
        matcher: llguidance.LLMatcher,
        vocab_size: int,
        tokenizer_size: int,
        name: str,
        *,
        single_token: Callable[[bytes], int | None] | None = None,
        eos_token_ids: frozenset[int] = frozenset(),
    ) -> None:
        import numpy as np

        self._matcher = matcher
        self._eos = eos_token_ids
        self._single_token = single_token
        self.vocab_size = vocab_size
        self.name = name
        self._known = min(tokenizer_size, vocab_size)
        self._words: NDArray[np.int32] = np.zeros((1, (tokenizer_size + 31) // 32), np.int32)
        self._mask: torch.Tensor | None = None

    def allowed_mask(self) -> torch.Tensor:
        """``bool[vocab_size]``: True where the next token may be that id.

        Computed once per state (cached until the next ``consume``); the returned
        tensor is the caller's to keep or modify.
        """
        if self._mask is None:
            self._mask = self._compute_mask()
        return self._mask.clone()

    def _compute_mask(self) -> torch.Tensor:
        import llguidance.numpy
        import numpy as np
        import torch

        self._raise_if_error()
        llguidance.numpy.fill_next_token_bitmask(self._matcher, self._words)
        # int32 words hold bit j of word w at token 32*w + j; on a little-endian
        # machine that is byte 4*w + j//8, bit j%8: unpack bytes little-endian.
        words = self._words[0].astype("<i4", copy=False)
        bits = np.unpackbits(words.view(np.uint8), bitorder="little", count=self._known)
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        mask[: self._known] = torch.from_numpy(bits.astype(np.bool_))
        separate = self._separate_forced_token()
        if separate is not None and mask[separate]:
            # the same choice forced_tokens() makes, so a loop that only masks gets it too
            mask[:] = False
            mask[separate] = True
        return mask

    def _separate_forced_token(self) -> int | None:
        """The one token the forced text is, when llguidance would not force it itself."""
        if self._single_token is None or self._matcher.compute_ff_tokens():
            return None
        rest = self._matcher.compute_ff_bytes()
        return self._single_token(rest) if rest else None

    def is_allowed(self, token_id: int) -> bool:
        """Whether the grammar admits ``token_id`` next (cheap; no mask is computed).

        The mask can be narrower: where a string value opens, it holds only the lone
        quote token (see :meth:`forced_tokens`), though the grammar also admits the
        quote merged with content (`` "$``); ``consume`` takes either.
        """
        if not 0 <= token_id < self._known or self._matcher.is_error():
            return False
        if token_id in self._eos:
            return bool(self._matcher.is_accepting())
        return bool(self._matcher.validate_tokens([token_id]) == 1)

    def consume(self, token_id: int) -> None:
        """Advance past the chosen token; a token the grammar forbids raises GrammarError."""
        self._raise_if_error()
        if not self.is_allowed(token_id):
            raise GrammarError(
                f"Token {token_id} is not allowed by the {self.name} here; pick tokens from "
                "allowed_mask()."
            )
        self._mask = None
        if not self._matcher.consume_token(token_id):
            self._raise_if_error()

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar dictates next (possibly none), in order; not yet consumed.

        llguidance's own fast-forward stops where the forced text could still merge
        with what follows into a longer token (at ``"key":`` before `` "``, since
        `` "2`` could be one token). Left there, the model picks among `` "``-prefixed
        tokens and the 135M model takes `` "}}`` or `` ""`` over `` "``; prompted with
        the text tokenized as usual it writes ``"2...`` (75%). So when the rest of the
        forced text is one token that stays separate before ordinary words (as `` "``
        does and a bare space does not), it is forced too: the model then chooses the
        content, not where a quote ends.
        """
        if self._matcher.is_error() or self._matcher.is_stopped():
            return []
        tokens = list(self._matcher.compute_ff_tokens())
        if self._single_token is None:
            return tokens
        rest = self._matcher.compute_ff_bytes()
        if tokens:  # the bytes still forced once the fast-forward tokens are in
            ahead = self._matcher.deep_copy()
            ahead.consume_tokens(tokens)
            rest = ahead.compute_ff_bytes()
        token = self._single_token(rest) if rest else None
        if token is not None and self._matcher.validate_tokens([*tokens, token]) == len(tokens) + 1:
            tokens.append(token)
        return tokens

    def is_accepting(self) -> bool:
        """The output so far is complete: EOS is allowed now (more may still be allowed)."""
        return bool(self._matcher.is_accepting())

    def is_stopped(self) -> bool:
        """The grammar has ended (nothing but EOS can follow, or EOS was consumed)."""
        return bool(self._matcher.is_stopped())

    def reset(self) -> None:
        """Back to the initial state, as if no token had been consumed."""
        self._matcher.reset()
        self._mask = None

    def _raise_if_error(self) -> None:
        if self._matcher.is_error():
            raise GrammarError(f"The {self.name} is in an error state: {self._matcher.get_error()}")


def batch_allowed_mask(
    grammars: Sequence[TokenGrammar | None], vocab_size: int
) -> torch.Tensor | None:
    """``bool[rows, vocab_size]`` for a batch; rows without a grammar allow everything.

    None when no row is constrained, so an unconstrained batch pays nothing.
    """
    import torch

    if all(g is None for g in grammars):
        return None
    mask = torch.ones(len(grammars), vocab_size, dtype=torch.bool)
    for row, grammar in enumerate(grammars):
        if grammar is not None:
            mask[row] = grammar.allowed_mask()
    return mask
