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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from langchain_pad.profiles.base import AUTO, BaseProfileStore, RewardModelSetting
from langchain_pad.profiles.matcher import is_anchor, is_user
from langchain_pad.profiles.profile import PreferenceProfile, ProfileVersion
from langchain_pad.profiles.protocol import DescriptionRows, FeedbackLearner, FeedbackRecord, Kind

try:
    from langgraph.store.base import BaseStore, Item
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "langchain_pad.integrations.langgraph needs the langgraph extra: "
        "pip install 'langchain-pad[langgraph]'"
    ) from exc

from langchain_pad.integrations.langgraph_transaction import (
    LangGraphTransaction,
    batches,
    escape_label,
    stored_profile,
    unescape_label,
)

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
    def _transaction(self) -> Iterator[LangGraphTransaction]:
        with self._write_lock:
            txn = LangGraphTransaction(self)
            yield txn
            for ops in batches(txn.ops):
                self.store.batch(ops)

    def _read(self, user_id: str) -> PreferenceProfile | None:
        item = self.store.get(self._ns("profiles"), escape_label(user_id))
        return None if item is None else stored_profile(item.value)

    def _read_many(self, user_ids: Sequence[str]) -> dict[str, PreferenceProfile]:
        out = {}
        for user_id in dict.fromkeys(user_ids):
            profile = self._read(user_id)
            if profile is not None:
                out[user_id] = profile
        return out

    def _list(self, kind: Kind | None, limit: int | None, offset: int) -> list[PreferenceProfile]:
        profiles = [stored_profile(item.value) for item in self._all(self._ns("profiles"))]
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


# ---------------------------------------------------------------------- graph helpers

# The node helpers live in langgraph_nodes.py (one job per module); importable from here.
from langchain_pad.integrations.langgraph_nodes import (  # noqa: E402
    PADContext,
    ainvoke_with_context,
    chat_node,
    invoke_with_context,
    pad_kwargs,
)
