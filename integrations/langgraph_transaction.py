"""Writes to a LangGraph ``BaseStore`` collected in one transaction, and its key labels.

``BaseStore`` has no transactions: :class:`LangGraphTransaction` keeps a profile write's
puts in memory (reads see them first) and applies them in as few ``batch`` calls as
LangGraph's in-memory index allows, so a failed write leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langgraph.store.base import PutOp

from langchain_pad.profiles.profile import PreferenceProfile, ProfileVersion, stored_context
from langchain_pad.profiles.protocol import FeedbackRecord, history_entry

if TYPE_CHECKING:
    from langchain_pad.integrations.langgraph import LangGraphProfileStore

__all__ = ["LangGraphTransaction", "batches", "escape_label", "stored_profile", "unescape_label"]


def escape_label(text: str) -> str:
    """A user id as a LangGraph namespace label: ``%`` and ``.`` percent-encoded.

    Reversible (:func:`unescape_label`) and readable: ``ana@example.org`` becomes
    ``ana@example%2Eorg``.
    """
    if not text:
        raise ValueError("a namespace label cannot be empty")
    return text.replace("%", "%25").replace(".", "%2E")


def unescape_label(label: str) -> str:
    return label.replace("%2E", ".").replace("%25", "%")


class LangGraphTransaction:
    """Writes collected in memory, applied in one ``batch``; reads see them first."""

    def __init__(self, owner: LangGraphProfileStore) -> None:
        self.owner = owner
        self.ops: list[PutOp] = []
        self._pending: dict[tuple[tuple[str, ...], str], Mapping[str, Any] | None] = {}
        self._counters: dict[str, int] = {}

    def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any] | None,
        index: list[str] | Literal[False] = False,
    ) -> None:
        self._pending[(namespace, key)] = value
        self.ops.append(PutOp(namespace, key, None if value is None else dict(value), index=index))

    def _get(self, namespace: tuple[str, ...], key: str) -> Mapping[str, Any] | None:
        if (namespace, key) in self._pending:
            return self._pending[(namespace, key)]
        item = self.owner.store.get(namespace, key)
        return None if item is None else item.value

    def _items(self, namespace: tuple[str, ...]) -> list[tuple[str, Mapping[str, Any]]]:
        found: dict[str, Mapping[str, Any]] = {
            item.key: item.value for item in self.owner._all(namespace)
        }
        for (ns, key), value in self._pending.items():
            if ns != namespace:
                continue
            if value is None:
                found.pop(key, None)
            else:
                found[key] = value
        return sorted(found.items())

    def next_id(self, name: str) -> int:
        current = self._counters.get(name)
        if current is None:
            value = self._get(self.owner._ns("meta"), name)
            current = int(value["value"]) if value is not None else 0
        self._counters[name] = current + 1
        self.put(self.owner._ns("meta"), name, {"value": current + 1})
        return current + 1

    def bump(self, name: str) -> None:
        self.next_id(name)

    # -- Transaction protocol

    def load(self, user_id: str) -> PreferenceProfile | None:
        value = self._get(self.owner._ns("profiles"), escape_label(user_id))
        return None if value is None else stored_profile(value)

    def descriptions(self, user_id: str) -> list[str]:
        rows = self._items(self.owner._ns("descriptions", escape_label(user_id)))
        return [value["text"] for _, value in rows]

    def save(
        self,
        profile: PreferenceProfile,
        reason: str,
        vectors: Sequence[tuple[str, Sequence[float]]] | None,
    ) -> None:
        self.put(
            self.owner._ns("profiles"),
            escape_label(profile.user_id),
            profile.model_dump(mode="json"),
        )
        self.write_history(history_entry(profile, reason))
        if vectors is not None:
            self._replace_descriptions(profile.user_id, vectors)

    def write_history(self, entry: ProfileVersion) -> None:
        self.put(
            self.owner._ns("history", escape_label(entry.user_id)),
            f"{entry.version:09d}",
            entry.model_dump(mode="json"),
        )

    def _replace_descriptions(
        self, user_id: str, vectors: Sequence[tuple[str, Sequence[float]]]
    ) -> None:
        namespace = self.owner._ns("descriptions", escape_label(user_id))
        old = self._items(namespace)
        for key, _ in old:
            self.put(namespace, key, None)
        if old:
            self.bump("desc_epoch")
        for text, vector in vectors:
            row = self.next_id("desc_seq")
            self.put(
                namespace,
                f"{row:012d}",
                {
                    "row": row,
                    "user_id": user_id,
                    "text": text,
                    "vector": [float(v) for v in vector],
                },
                index=self.owner._text_index(),
            )

    def remove(self, user_id: str) -> None:
        self.put(self.owner._ns("profiles"), escape_label(user_id), None)
        self._replace_descriptions(user_id, [])

    def add_feedback(self, record: FeedbackRecord) -> int:
        row = self.next_id("feedback_seq")
        stored = record.model_copy(update={"id": row})
        self.put(
            self.owner._ns("feedback", escape_label(record.user_id)),
            f"{row:012d}",
            stored.model_dump(mode="json"),
        )
        return row

    def feedback(self, user_id: str) -> list[FeedbackRecord]:
        rows = self._items(self.owner._ns("feedback", escape_label(user_id)))
        return [FeedbackRecord.model_validate(value) for _, value in rows]

    def set_features(
        self, record: FeedbackRecord, features: list[float] | None, reward_model_id: str
    ) -> None:
        update = {"features": features, "reward_model_id": reward_model_id}
        stored = record.model_copy(update=update)
        self.put(
            self.owner._ns("feedback", escape_label(record.user_id)),
            f"{record.id:012d}",
            stored.model_dump(mode="json"),
        )


def batches(ops: Sequence[PutOp]) -> Iterator[list[PutOp]]:
    """The transaction's writes, in order, in as few ``batch`` calls as possible.

    One call normally; a new one starts only where an indexed text repeats, because
    LangGraph's ``InMemoryStore`` embeds a text once per batch but indexes it for every
    item that has it, and then fails ("Number of embeddings (1) does not match number
    of indices (2)") when two items of one batch share a text.
    """
    current: list[PutOp] = []
    texts: set[str] = set()
    for op in ops:
        text = op.value.get("text") if op.value is not None and op.index else None
        if isinstance(text, str) and text in texts:
            yield current
            current, texts = [], set()
        if isinstance(text, str):
            texts.add(text)
        current.append(op)
    if current:
        yield current


def stored_profile(value: Mapping[str, Any]) -> PreferenceProfile:
    return PreferenceProfile.model_validate(dict(value), context=stored_context())
