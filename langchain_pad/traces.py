"""Plain data about what PAD did to each token of an answer: records, traces, tables.

A :class:`TokenRecord` is one generated token with the numbers PAD computed for it;
a :class:`RunTrace` is one model run (one answer) as a list of them plus the run's
preference weights and summary. Both are plain values, so they can be stored,
compared, turned into a table or drawn (``langchain_pad.render``) without LangChain
or torch. Traces come from :class:`~langchain_pad.callbacks.TokenRewardHandler`
while a run streams, or from a finished message with :meth:`RunTrace.from_message`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_pad.records import TokenRecord, record_at, summarize

__all__ = ["RunTrace", "TokenRecord", "record_at", "records_table", "summarize", "traces_table"]


@dataclass
class RunTrace:
    """One run's tokens, in order, with the preference that steered them."""

    run_id: str
    label: str = ""
    """A caller-given name (``metadata={"pad_label": ...}`` or the run name)."""
    prompt: str = ""
    tokens: list[TokenRecord] = field(default_factory=list)
    axes: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    beta: float | None = None
    summary: dict[str, Any] | None = None
    """The summary the model's last chunk carried; see :func:`summarize`."""
    finish_reason: str | None = None
    done: bool = False
    error: str | None = None

    @property
    def text(self) -> str:
        """The answer as its tokens wrote it (stop-sequence text included)."""
        return "".join(t.text for t in self.tokens)

    @property
    def guided(self) -> bool:
        return any(t.reward is not None for t in self.tokens)

    @property
    def title(self) -> str:
        """The label, or a description of the weights when no label was given."""
        if self.label:
            return self.label
        steering = {a: w for a, w in self.weights.items() if w != 0}
        if not steering:
            return "base model" if not self.guided else "PAD, all weights 0"
        return "PAD " + ", ".join(f"{a} {w:+g}" for a, w in steering.items())

    def computed_summary(self) -> dict[str, Any]:
        """The model's own summary if it sent one, else one computed from the tokens."""
        if self.summary is not None:
            return self.summary
        return summarize(self.tokens, self.axes, self.weights, self.beta)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tokens"] = [t.to_dict() for t in self.tokens]
        return out

    @classmethod
    def from_message(
        cls, message: Any, *, label: str = "", prompt: str = "", run_id: str = ""
    ) -> RunTrace:
        """Rebuild a trace from a finished message (``invoke``) or merged stream chunks.

        Raises ``ValueError`` when the message does not hold one entry per generated
        token: ``stream_events(version="v3")`` keeps only the last chunk's metadata, so
        collect those runs with a ``TokenRewardHandler`` instead.
        """
        metadata: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        run_id = run_id or str(getattr(message, "id", "") or "")
        ids = list(metadata.get("token_ids") or [])
        texts = list(metadata.get("token_texts") or [])
        logprobs = list(metadata.get("token_logprobs") or [])
        pad: Mapping[str, list[Any]] = metadata.get("pad") or {}
        usage = getattr(message, "usage_metadata", None) or {}
        expected = usage.get("output_tokens", len(ids))
        if not ids or len(ids) != expected or len(texts) != len(ids):
            raise ValueError(
                f"This message holds per-token data for {len(ids)} of {expected} generated "
                "tokens. Pass the message of invoke()/batch() or the sum of all stream "
                "chunks; for event streams, collect tokens with TokenRewardHandler."
            )
        tokens = [
            record_at(run_id, i, ids[i], texts[i], logprobs[i] if i < len(logprobs) else None, pad)
            for i in range(len(ids))
        ]
        return cls(
            run_id=run_id,
            label=label,
            prompt=prompt,
            tokens=tokens,
            axes=list(metadata.get("pad_axes") or []),
            weights=dict(metadata.get("pad_weights") or {}),
            beta=metadata.get("pad_beta"),
            summary=metadata.get("pad_summary"),
            finish_reason=metadata.get("finish_reason"),
            done=True,
        )


def records_table(records: Iterable[TokenRecord], axes: Sequence[str] = ()) -> dict[str, list[Any]]:
    """A column-oriented table (``{column: values}``), one row per token; no pandas needed.

    Per-axis features become columns ``phi:<axis>`` (None where a record has none);
    ``pandas.DataFrame(table)`` or ``polars.DataFrame(table)`` take it as it is.
    """
    rows = list(records)
    columns: dict[str, list[Any]] = {
        "run_id": [r.run_id for r in rows],
        "index": [r.index for r in rows],
        "token_id": [r.token_id for r in rows],
        "text": [r.text for r in rows],
        "reward": [r.reward for r in rows],
        "base_logprob": [r.base_logprob for r in rows],
        "base_rank": [r.base_rank for r in rows],
        "changed": [r.changed for r in rows],
        "base_token_id": [r.base_token_id for r in rows],
        "base_token_text": [r.base_token_text for r in rows],
    }
    for position, axis in enumerate(axes):
        columns[f"phi:{axis}"] = [
            r.features[position] if r.features is not None and position < len(r.features) else None
            for r in rows
        ]
    return columns


def traces_table(traces: Iterable[RunTrace]) -> dict[str, list[Any]]:
    """One table for several runs: :func:`records_table` of each, plus a ``label`` column.

    Runs may use different reward models: each ``phi:<axis>`` column holds None for
    the rows of runs without that axis.
    """
    parts = [(t, records_table(t.tokens, t.axes)) for t in traces]
    columns: dict[str, list[Any]] = {"label": []}
    for _, part in parts:
        for name in part:
            columns.setdefault(name, [])
    for trace, part in parts:
        rows = len(trace.tokens)
        columns["label"].extend([trace.title] * rows)
        for name, values in columns.items():
            if name != "label":
                values.extend(part.get(name, [None] * rows))
    return columns
