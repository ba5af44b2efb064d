"""``langchain-pad serve`` with one injected fault, for the row-isolation test through HTTP.

Every value a request can carry is now checked where the request is built (a beta
that overflows float32, a seed the generator refuses, NaN temperatures: all 400s before
decoding), so no request body is left that breaks on the decoding thread by itself.
To prove that a row failing *inside* a wave still fails alone, this launcher makes one
kind of row fail there, honestly and visibly: a row decoded under a JSON-schema grammar
titled ``"poison"`` raises from its grammar's first mask on the decoding thread (the
row is in its wave by then: masks are only asked for at a decision; forced tokens are
fast-forwarded without one). Everything else is the real server.

Run as ``python _faulty_serve.py serve --port ...`` (the arguments of ``langchain-pad``).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from langchain_pad.engine.grammar import TokenGrammar

POISON = "poison"
FAULT = "injected fault: the 'poison' grammar fell over on the decoding thread"

_original = TokenGrammar.allowed_mask


def _faulty_mask(self: TokenGrammar) -> Any:
    if POISON in self.name and threading.current_thread().name == "langchain-pad-decoder":
        steps = getattr(self, "_poison_steps", 0) + 1
        self._poison_steps = steps  # type: ignore[attr-defined]
        if steps >= 1:
            raise RuntimeError(FAULT)
    return _original(self)


TokenGrammar.allowed_mask = _faulty_mask  # type: ignore[method-assign]

if __name__ == "__main__":
    from langchain_pad.cli import main

    sys.exit(main(sys.argv[1:]))
