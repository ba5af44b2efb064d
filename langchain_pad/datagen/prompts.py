"""The project's instruction set, and its fixed train / held-out split.

The split is a function of the prompt id alone (a hash), so it never changes when
prompts are added, and no prompt can drift from held-out into training between runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

Split = Literal["train", "heldout"]

HELDOUT_PERCENT = 15
"""Share of prompts (by id hash) kept out of training for evaluation."""


@dataclass(frozen=True)
class PromptItem:
    id: str
    category: str
    text: str
    split: Split


def split_of(prompt_id: str, heldout_percent: int = HELDOUT_PERCENT) -> Split:
    bucket = int(hashlib.sha256(prompt_id.encode()).hexdigest(), 16) % 100
    return "heldout" if bucket < heldout_percent else "train"


def default_prompts_path() -> Path:
    return Path(str(resources.files("langchain_pad") / "data" / "prompts.json"))


def load_prompts(path: str | Path | None = None) -> list[PromptItem]:
    """Read a prompt set (``{"prompts": [{"id", "category", "text"}]}``), with splits."""
    source = Path(path) if path is not None else default_prompts_path()
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
        entries = raw["prompts"]
        items = [
            PromptItem(str(e["id"]), str(e.get("category", "")), str(e["text"]), split_of(e["id"]))
            for e in entries
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{source} is not a prompt set: expected JSON {{'prompts': [{{'id', 'text'}}, ...]}} "
            f"({exc})."
        ) from exc
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source} has duplicate prompt ids; every id must be unique.")
    if any(not item.text.strip() for item in items):
        raise ValueError(f"{source} has an empty prompt text.")
    return items


def prompts_digest(path: str | Path | None = None) -> str:
    source = Path(path) if path is not None else default_prompts_path()
    return hashlib.sha256(source.read_bytes()).hexdigest()
