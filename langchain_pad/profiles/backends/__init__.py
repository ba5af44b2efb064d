"""Profile-store backends: SQLite and in-memory here, over the shared SQL layer
(:mod:`.sql`, also used by ``langchain_pad.integrations.postgres``); PostgreSQL and
LangGraph stores live in ``langchain_pad.integrations``."""

from langchain_pad.profiles.backends.memory import InMemoryProfileStore
from langchain_pad.profiles.backends.sqlite import SQLiteProfileStore

__all__ = ["InMemoryProfileStore", "SQLiteProfileStore"]
