"""LangGraph: preference profiles in a LangGraph store, and per-user PAD in graph nodes.

```python
from dataclasses import dataclass

from langgraph.graph import START, MessagesState, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore

from langchain_pad import PADChatModel
from langchain_pad.integrations.langgraph import LangGraphProfileStore, PADContext, chat_node

store = LangGraphProfileStore(InMemoryStore(index={"dims": 384, "embed": embed}))
llm = PADChatModel(reward_model="default", profile_store=store)

graph = (
    StateGraph(MessagesState, context_schema=PADContext)
    .add_node("answer", chat_node(llm))
    .add_edge(START, "answer")
    .compile()
)
graph.invoke({"messages": [("user", "Explain tides.")]}, context=PADContext(user_id="ana"))
for token, meta in graph.stream(..., context=PADContext(preference="keep it short"),
                                stream_mode="messages"):
    print(token.content, end="")
```

:class:`LangGraphProfileStore` keeps profiles, their history and feedback in any
LangGraph ``BaseStore`` (in-memory, Postgres, SQLite, a deployed LangGraph server), and
matches user profiles with the store's own semantic search when the store has an
``index`` configured (the anchor poles are ranked in process by the same ranker as
every other profile store, so a text picks the same pole everywhere). User ids are
escaped before they become namespace labels (LangGraph forbids ``.`` in labels, so an
e-mail address cannot be one as it is).

What it guarantees: a write (a version with its history entry and descriptions, or a
feedback pair with the refit version) is collected and applied in one
``BaseStore.batch`` call at the end, so a failed refit writes nothing; writers in one
process are serialized by a lock, so concurrent feedback in a process is never lost.
``BaseStore`` has no transactions, so writers in *different* processes sharing one
store are not serialized: use the SQLite or Postgres profile store for that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from langchain_pad.profiles.base import AUTO, BaseProfileStore, RewardModelSetting
from langchain_pad.profiles.matcher import is_anchor, is_user
from langchain_pad.profiles.profile import PreferenceProfile, ProfileVersion, stored_context
from langchain_pad.profiles.protocol import DescriptionRows, FeedbackLearner, FeedbackRecord, Kind

try:
    from langgraph.store.base import BaseStore, Item, PutOp
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "langchain_pad.integrations.langgraph needs the langgraph extra: "
        "pip install 'langchain-pad[langgraph]'"
    ) from exc

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder

__all__ = [
    "LangGraphProfileStore",
    "PADContext",
    "ainvoke_with_context",
    "chat_node",
    "escape_label",
    "invoke_with_context",
    "pad_kwargs",
    "unescape_label",
]


# ---------------------------------------------------------------------- namespace labels


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


# ---------------------------------------------------------------------- the store

_PAGE = 500


class LangGraphProfileStore(BaseProfileStore):
    """A ``ProfileStore`` in a LangGraph ``BaseStore``, under ``namespace``.

    Layout (``ns`` = ``namespace``, ``u`` = the escaped user id)::

        (*ns, "profiles")          key u       the current profile
        (*ns, "history", u)        key 000042  every version (and deletions)
        (*ns, "feedback", u)       key 000007  feedback pairs, with stage-2 features
        (*ns, "descriptions", u)   key 000013  description and aliases (semantic index
                                               on the field "text")
        (*ns, "meta")              key ...     counters, embedding model name

    With a store ``index`` (``{"dims": ..., "embed": ..., "fields": ["text"]}``; fields
    default to ``["text"]`` here), ``match`` finds user profiles by the store's semantic
    search; without one it ranks the vectors this store keeps itself (``embedder``).
    Anchors are always ranked by the in-process anchor ranker (``rerank`` honoured).
    ``reward_model``, ``anchors`` and ``anchors_from`` as for
    :class:`~langchain_pad.profiles.SQLiteProfileStore`.
    """

    _backend_name = "langgraph"

    def __init__(
        self,
        store: BaseStore,
        *,
        namespace: tuple[str, ...] = ("langchain_pad",),
        embedder: Embedder | None = None,
        learner: FeedbackLearner | None = None,
        reward_model: RewardModelSetting = "default",
        anchors: Sequence[PreferenceProfile] = (),
        anchors_from: str | Path | None = AUTO,
    ) -> None:
        self.store = store
        super().__init__(
            embedder=embedder,
            learner=learner,
            reward_model=reward_model,
            search=self._semantic_search if self.semantic else None,
        )
        self.namespace = tuple(namespace)
        self._write_lock = threading.RLock()
        self._seed_initial(anchors, anchors_from)

    # ------------------------------------------------------------------ layout

    def _ns(self, *labels: str) -> tuple[str, ...]:
        return (*self.namespace, *labels)

    @property
    def semantic(self) -> bool:
        """Whether the LangGraph store embeds descriptions itself (has an ``index``)."""
        return getattr(self.store, "index_config", None) is not None

    def _all(self, prefix: tuple[str, ...]) -> list[Item]:
        items: list[Item] = []
        while True:
            page = self.store.search(prefix, limit=_PAGE, offset=len(items))
            items.extend(page)
            if len(page) < _PAGE:
                return items

    # ------------------------------------------------------------------ primitives

    @contextmanager
    def _transaction(self) -> Iterator[_LangGraphTransaction]:
        with self._write_lock:
            txn = _LangGraphTransaction(self)
            yield txn
            for ops in _batches(txn.ops):
                self.store.batch(ops)

    def _read(self, user_id: str) -> PreferenceProfile | None:
        item = self.store.get(self._ns("profiles"), escape_label(user_id))
        return None if item is None else _profile(item.value)

    def _read_many(self, user_ids: Sequence[str]) -> dict[str, PreferenceProfile]:
        out = {}
        for user_id in dict.fromkeys(user_ids):
            profile = self._read(user_id)
            if profile is not None:
                out[user_id] = profile
        return out

    def _list(self, kind: Kind | None, limit: int | None, offset: int) -> list[PreferenceProfile]:
        profiles = [_profile(item.value) for item in self._all(self._ns("profiles"))]
        if kind is not None:
            profiles = [p for p in profiles if p.kind == kind]
        profiles.sort(key=lambda p: p.user_id)
        end = None if limit is None else offset + limit
        return profiles[offset:end]

    def _count(self, kind: Kind | None) -> int:
        return len(self._list(kind, None, 0))

    def _history(self, user_id: str | None) -> list[ProfileVersion]:
        prefix = (
            self._ns("history") if user_id is None else self._ns("history", escape_label(user_id))
        )
        entries = [ProfileVersion.model_validate(item.value) for item in self._all(prefix)]
        entries.sort(key=lambda h: (h.user_id, h.version))
        return entries

    def _feedback(self, user_id: str | None) -> list[FeedbackRecord]:
        prefix = (
            self._ns("feedback") if user_id is None else self._ns("feedback", escape_label(user_id))
        )
        records = [FeedbackRecord.model_validate(item.value) for item in self._all(prefix)]
        records.sort(key=lambda r: (r.user_id, r.id or 0))
        return records

    def _counter(self, name: str) -> int:
        item = self.store.get(self._ns("meta"), name)
        return int(item.value["value"]) if item is not None else 0

    def _description_state(self, anchors_only: bool = False) -> tuple[object, int]:
        return (id(self.store), self.namespace, self._counter("desc_epoch")), self._counter(
            "desc_seq"
        )

    def _description_rows(self, after_id: int, anchors_only: bool = False) -> DescriptionRows:
        items = [
            i
            for i in self._all(self._ns("descriptions"))
            if i.value["row"] > after_id
            and not (anchors_only and not is_anchor(i.value["user_id"]))
        ]
        items.sort(key=lambda i: i.value["row"])
        if not items:
            return [], [], [], np.zeros((0, 0), dtype=np.float32)
        vectors = np.asarray([i.value["vector"] for i in items], dtype=np.float32)
        return (
            [i.value["row"] for i in items],
            [i.value["user_id"] for i in items],
            [i.value["text"] for i in items],
            vectors,
        )

    def _meta(self, key: str) -> str | None:
        item = self.store.get(self._ns("meta"), key)
        return None if item is None else str(item.value["value"])

    def _set_meta(self, key: str, value: str) -> None:
        self.store.put(self._ns("meta"), key, {"value": value}, index=False)

    def _reembed_all(self, embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]) -> None:
        items = self._all(self._ns("descriptions"))
        if not items:
            return
        vectors = embed([i.value["text"] for i in items])
        with self._transaction() as txn:
            for item, vector in zip(items, vectors, strict=True):
                value = {**item.value, "vector": [float(v) for v in vector]}
                txn.put(tuple(item.namespace), item.key, value, index=self._text_index())
            txn.bump("desc_epoch")

    def _text_index(self) -> list[str] | Literal[False]:
        return ["text"] if self.semantic else False

    # ------------------------------------------------------------------ matching

    def _semantic_search(
        self, query: npt.NDArray[np.float32], query_text: str, top_k: int, kind: Kind | None
    ) -> list[tuple[str, float, str]]:
        """User (or any) profiles nearest to the query by the LangGraph store's semantic
        search; by the in-process index when only a vector is given."""
        keep = {"anchor": is_anchor, "user": is_user}.get(kind) if kind else None
        if not query_text.strip() or top_k <= 0:
            return self.matcher.refresh().search(query, top_k, keep=keep)
        want = max(4 * top_k, top_k + 16)
        hits = self.store.search(self._ns("descriptions"), query=query_text, limit=want)
        best: dict[str, tuple[float, str]] = {}
        for item in hits:
            user_id = item.value["user_id"]
            if keep is not None and not keep(user_id):
                continue
            if user_id not in best and item.score is not None:
                best[user_id] = (float(item.score), item.value["text"])
                if len(best) == top_k:
                    break
        return [(user, sim, text) for user, (sim, text) in best.items()]


class _LangGraphTransaction:
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
        return None if value is None else _profile(value)

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
        self.write_history(
            ProfileVersion(
                user_id=profile.user_id,
                version=profile.version,
                reason=reason,
                recorded_at=profile.updated_at,
                profile=profile.model_copy(update={"embedding": None}),
            )
        )
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


def _batches(ops: Sequence[PutOp]) -> Iterator[list[PutOp]]:
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


def _profile(value: Mapping[str, Any]) -> PreferenceProfile:
    return PreferenceProfile.model_validate(dict(value), context=stored_context())


# ---------------------------------------------------------------------- graph helpers

# The node helpers live in langgraph_nodes.py (one job per module); importable from here.
from langchain_pad.integrations.langgraph_nodes import (  # noqa: E402
    PADContext,
    ainvoke_with_context,
    chat_node,
    invoke_with_context,
    pad_kwargs,
)
