"""What a path holds, decided before the SQLite store writes a byte to it.

A profile store is handed paths by people: a typo, a directory, a file of another
program, a damaged copy, a read-only mount. The store's rule is that it alters only
files that are its own or empty, so each of these is sorted out here first, with a
read-only connection that cannot change the file:

- **new**: no file, an empty file, or a SQLite database without tables or schema
  version: the store initialises it;
- **ours**: our tables and a schema version we wrote (and our ``application_id``, or
  none for files from before it was set): the store migrates it as needed;
- **damaged**: SQLite cannot read it ("file is not a database", "database disk image
  is malformed") or our tables are missing: the store opens it for
  ``check_integrity()``, ``health()`` and whatever is still readable, and refuses
  every write, so nothing more is lost;
- anything else (another program's tables, a ``user_version`` or ``application_id``
  we did not set) is refused with :func:`not_ours_error` and left byte-identical.

Errors name the file and say what to do; findings (:func:`integrity_findings`) name
neither paths nor users, so a server may show them.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal

from langchain_pad.profiles.protocol import ProfileStoreError

__all__ = [
    "APPLICATION_ID",
    "OUR_TABLES",
    "FileKind",
    "check_path",
    "connect",
    "damage_of",
    "damaged_error",
    "ensure_parent",
    "inspect",
    "integrity_findings",
    "not_ours_error",
    "read_only_error",
    "read_only_reason",
]

APPLICATION_ID = 0x50414450
"""``PRAGMA application_id`` of a profile store ("PADP"): marks the file as ours."""
OUR_TABLES = ("meta", "profiles", "history", "descriptions", "feedback")
FileKind = Literal["new", "ours", "damaged"]

_CORRUPT, _NOTADB, _READONLY, _CANTOPEN = 11, 26, 8, 14  # SQLite primary result codes
_MAX_FINDINGS = 20


def _what_to_do(path: Path) -> str:
    return (
        f"run `langchain-pad profiles --store {path} check` to list what is wrong, then "
        "restore the file from a backup, or export what is still readable "
        f"(`langchain-pad profiles --store {path} export FILE`, or export_json()) and "
        "import it into a new store"
    )


def damaged_error(path: Path, finding: str) -> ProfileStoreError:
    """The error every write to a damaged store raises (nothing is written)."""
    return ProfileStoreError(
        f"the profile store {path} is damaged ({finding}); it takes no more writes, so "
        f"nothing more is lost: {_what_to_do(path)}"
    )


def read_only_error(path: Path, reason: str) -> ProfileStoreError:
    """The error every write to a read-only store raises."""
    return ProfileStoreError(
        f"the profile store {path} is read-only ({reason}): it can be read, not written; "
        "open it with write access (a writable file and directory, read_only=False) "
        "to change it"
    )


def not_ours_error(path: Path, what: str) -> ProfileStoreError:
    return ProfileStoreError(
        f"{path} is not a langchain-pad profile store: {what}. It was left untouched; "
        "pass the path of a profile store, or of a new file"
    )


def check_path(path: Path) -> None:
    """Refuse a path that cannot be a store file: a directory, or one under a file
    (where ``mkdir`` would say a misleading "File exists")."""
    if path.is_dir():
        raise ProfileStoreError(
            f"cannot use {path} as a profile store: it is a directory; pass a file path "
            f"such as {path / 'profiles.sqlite3'}"
        )
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ProfileStoreError(
                    f"cannot use {path} as a profile store: {parent} is a file, not a "
                    f"directory; pass a path inside a directory, e.g. "
                    f"{parent.parent / path.name}"
                )
            return


def read_only_reason(path: Path, requested: bool) -> str | None:
    """Why the store must be read-only (None: it may write). As root, permission bits
    do not stop writes, so only ``read_only=True`` or a read-only mount make it so."""
    if requested:
        return "opened with read_only=True"
    if path.exists():
        if not os.access(path, os.W_OK):
            return "the file is not writable"
        if not os.access(path.parent, os.W_OK):
            return f"its directory {path.parent} is not writable (SQLite writes a journal there)"
    elif path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        return f"its directory {path.parent} is not writable"
    return None


def ensure_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProfileStoreError(
            f"cannot create the directory {path.parent} for the profile store {path}: "
            f"{exc.strerror or exc}"
        ) from exc


def _uri(path: Path, immutable: bool) -> str:
    uri = path.resolve().as_uri() + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def connect(path: Path, *, read_only: bool, timeout: float) -> sqlite3.Connection:
    """A connection to the file; read-only ones are opened with ``mode=ro`` (SQLite
    then cannot write whatever the permissions). A WAL file in a read-only directory
    has no ``-shm`` to share: without a ``-wal`` left behind nothing can be writing it,
    so it is then opened ``immutable``."""
    if not read_only:
        return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    connection = sqlite3.connect(
        _uri(path, False), uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        wal = Path(f"{path}-wal")
        # no -shm can be made (SQLITE_CANTOPEN or a READONLY_CANTINIT/CANTLOCK code)
        unshared = _code(exc) in (_CANTOPEN, _READONLY)
        if unshared and (not wal.exists() or wal.stat().st_size == 0):
            connection.close()
            return sqlite3.connect(
                _uri(path, True),
                uri=True,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
            )
    return connection


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def damage_of(exc: sqlite3.Error) -> str | None:
    """The finding a SQLite error means, if it means the file is damaged."""
    code = _code(exc)
    if code == _NOTADB or (code == 0 and "not a database" in str(exc)):
        return "file is not a database"
    if code == _CORRUPT or (code == 0 and "malformed" in str(exc)):
        return f"SQLite: {exc}"
    return None


def is_read_only_error(exc: sqlite3.Error) -> bool:
    return _code(exc) == _READONLY


def inspect(
    path: Path, schema_version: int, timeout: float = 60.0
) -> tuple[FileKind, int, list[str]]:
    """``(kind, schema version, findings)`` of the file at ``path`` (module doc); raises
    :class:`ProfileStoreError` for a file that is not ours. Nothing is written."""
    if not path.exists() or path.stat().st_size == 0:
        return "new", 0, []
    try:
        connection = connect(path, read_only=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise ProfileStoreError(f"cannot open the profile store {path}: {exc}") from exc
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        app_id = int(connection.execute("PRAGMA application_id").fetchone()[0])
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        finding = damage_of(exc)
        if finding is None:
            raise ProfileStoreError(f"cannot read the profile store {path}: {exc}") from exc
        return "damaged", 0, [finding]
    finally:
        connection.close()
    names = {str(r[0]) for r in rows}
    ours = names & set(OUR_TABLES)
    if app_id not in (0, APPLICATION_ID):
        raise not_ours_error(path, f"its application_id is {app_id:#x}, another program's")
    if not names and version == 0:
        return "new", 0, []
    if not ours or version <= 0:
        tables = ", ".join(sorted(names)[:8]) or "none"
        raise not_ours_error(
            path, f"it is a SQLite database with user_version {version} and tables: {tables}"
        )
    if version > schema_version:
        raise ProfileStoreError(
            f"the profile store {path} uses schema version {version}, newer than this "
            f"langchain-pad understands ({schema_version}): upgrade langchain-pad"
        )
    missing = [t for t in OUR_TABLES if t not in names]
    if missing:
        return "damaged", version, [f"tables missing: {', '.join(missing)}"]
    return "ours", version, []


def integrity_findings(connection: sqlite3.Connection) -> list[str]:
    """What ``PRAGMA integrity_check`` finds, table by table when the whole check
    cannot finish (SQLite stops at the first unreadable page); never raises."""
    try:
        lines = [str(r[0]) for r in connection.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        finding = damage_of(exc) or f"SQLite: {exc}"
        if finding == "file is not a database":
            return [finding]
    else:
        if lines == ["ok"]:
            return _missing_tables(connection)
        found = [f"integrity_check: {line}" for line in lines[:_MAX_FINDINGS]]
        if len(lines) > _MAX_FINDINGS:
            found.append(f"integrity_check: {len(lines) - _MAX_FINDINGS} more problems")
        return found + _missing_tables(connection)
    findings = [f"integrity_check could not finish ({finding})"]
    for table in OUR_TABLES:
        try:
            lines = [str(r[0]) for r in connection.execute(f"PRAGMA integrity_check({table})")]
        except sqlite3.DatabaseError as exc:
            findings.append(f"table {table} is unreadable ({damage_of(exc) or exc})")
            continue
        if lines != ["ok"]:
            findings += [f"table {table}: {line}" for line in lines[:_MAX_FINDINGS]]
    return findings


def _missing_tables(connection: sqlite3.Connection) -> list[str]:
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = {str(r[0]) for r in rows}
    except sqlite3.DatabaseError as exc:
        return [damage_of(exc) or f"SQLite: {exc}"]
    missing = [t for t in OUR_TABLES if t not in names]
    return [f"tables missing: {', '.join(missing)}"] if missing else []
