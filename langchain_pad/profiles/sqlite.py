"""Old import path of the SQLite store, which lives in :mod:`.backends.sqlite`."""

from langchain_pad.profiles.backends.sqlite import (
    MIGRATIONS,
    PROFILES_ENV_VAR,
    SCHEMA_VERSION,
    SQLiteProfileStore,
    default_profiles_path,
    migrate,
)

__all__ = [
    "MIGRATIONS",
    "PROFILES_ENV_VAR",
    "SCHEMA_VERSION",
    "SQLiteProfileStore",
    "default_profiles_path",
    "migrate",
]
