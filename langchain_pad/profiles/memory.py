"""Old import path of the in-memory store, which lives in :mod:`.backends.memory`."""

from langchain_pad.profiles.backends.memory import InMemoryProfileStore

__all__ = ["InMemoryProfileStore"]
