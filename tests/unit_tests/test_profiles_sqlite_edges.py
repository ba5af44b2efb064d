"""The SQLite store at the edges, with real files: damaged files (bytes overwritten in
the middle, cut short, garbage), another program's database, read-only files and
directories, a path under a regular file, and ``health()``.

The rule under test: the store alters only files that are its own or empty, never
writes into a damaged one, and says in each error which file and what to do.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from langchain_pad import cli
from langchain_pad.profiles import InMemoryProfileStore, ProfileStoreError, SQLiteProfileStore
from langchain_pad.profiles.backends.sqlite_file import APPLICATION_ID
from langchain_pad.profiles.testing import CountingLearner, HashingEmbedder, anchor, user

ROOT = Path(__file__).resolve().parents[2]


def open_store(path: Path, **kwargs: object) -> SQLiteProfileStore:
    return SQLiteProfileStore(path, embedder=HashingEmbedder(), reward_model=None, **kwargs)


@pytest.fixture(scope="module")
def sound_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 300 profiles (about 1.3 MB, so the middle holds profile pages)."""
    path = tmp_path_factory.mktemp("sound") / "profiles.sqlite3"
    with open_store(path) as store:
        for i in range(300):
            store.put(user(f"u{i}", f"topic {i} words " * 20, expertise=i / 300))
    return path


def copy_of(sound_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "profiles.sqlite3"
    path.write_bytes(sound_file.read_bytes())
    return path


def overwrite_middle(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 4096)


def truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


DAMAGE = {"middle": overwrite_middle, "truncated": truncate, "garbage": garbage}
FINDING = {
    "middle": "table profiles is unreadable (SQLite: database disk image is malformed)",
    "truncated": "integrity_check could not finish (SQLite: database disk image is malformed)",
    "garbage": "file is not a database",
}


def every_write(store: SQLiteProfileStore) -> dict[str, object]:
    """Each kind of write, as a thunk."""
    new_anchor = anchor("x", "an anchor", expertise=1.0)
    export = {"format": "langchain-pad-profiles", "format_version": 1, "profiles": []}
    return {
        "put": lambda: store.put(user("new", "hello there", expertise=1.0)),
        "delete": lambda: store.delete("u1"),
        "record_feedback": lambda: store.record_feedback(
            "u1", "q", "long answer", "short", learner=CountingLearner()
        ),
        "import_json": lambda: store.import_json(export),
        "seed_anchors": lambda: store.seed_anchors([new_anchor]),
    }


# ---------------------------------------------------------------------- damage


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_file_is_reported_and_never_written(sound_file, tmp_path, damage):
    path = copy_of(sound_file, tmp_path)
    DAMAGE[damage](path)
    before = path.read_bytes()
    store = open_store(path)  # opens: so it can be checked, and read where it still reads
    findings = store.check_integrity()  # never raises
    assert FINDING[damage] in findings, findings
    health = store.health()
    assert health["ok"] is False and health["backend"] == "sqlite"
    assert FINDING[damage] in health["findings"]
    assert not any(str(tmp_path) in f for f in health["findings"])  # no paths shown
    for name, write in every_write(store).items():
        with pytest.raises(ProfileStoreError) as raised:
            write()  # type: ignore[operator]
        message = str(raised.value)
        assert f"the profile store {path} is damaged" in message, name
        assert f"langchain-pad profiles --store {path} check" in message
        assert "restore the file from a backup" in message and "export" in message
    store.close()
    assert path.read_bytes() == before


def test_damage_is_found_before_the_first_write(sound_file, tmp_path):
    """No check was asked for: the quick_check before the first write finds it."""
    path = copy_of(sound_file, tmp_path)
    overwrite_middle(path)
    before = path.read_bytes()
    with open_store(path) as store, pytest.raises(ProfileStoreError, match="is damaged"):
        store.put(user("new", "hello there", expertise=1.0))
    assert path.read_bytes() == before


def test_a_statement_meeting_damage_marks_the_store(sound_file, tmp_path):
    path = copy_of(sound_file, tmp_path)
    overwrite_middle(path)
    before = path.read_bytes()
    with open_store(path, quick_check=False) as store:
        with pytest.raises(ProfileStoreError, match="database disk image is malformed"):
            store.list_profiles()
        with pytest.raises(ProfileStoreError, match="is damaged"):
            store.put(user("new", "hello there", expertise=1.0))
        assert store.health()["ok"] is False
    assert path.read_bytes() == before


def test_missing_tables_are_damage(tmp_path):
    path = tmp_path / "profiles.sqlite3"
    open_store(path).close()
    connection = sqlite3.connect(path)
    connection.execute("DROP TABLE feedback")
    connection.commit()
    connection.close()
    store = open_store(path)
    assert store.check_integrity()[0] == "tables missing: feedback"
    with pytest.raises(ProfileStoreError, match=r"is damaged \(tables missing: feedback\)"):
        store.put(user("new", "hello there", expertise=1.0))


def test_a_sound_store_checks_clean_and_reports_healthy(sound_file, tmp_path):
    store = open_store(copy_of(sound_file, tmp_path))
    assert store.health() == {
        "ok": True,
        "backend": "sqlite",
        "read_only": False,
        "findings": [],
        "checked_at": None,
    }
    assert store.check_integrity() == []
    refreshed = store.health(refresh=True)
    assert refreshed["ok"] is True and refreshed["checked_at"] is not None
    assert InMemoryProfileStore(reward_model=None).health()["backend"] == "memory"


def test_health_counts_inconsistent_profiles_without_naming_them(tmp_path):
    path = tmp_path / "profiles.sqlite3"
    store = open_store(path)
    store.put(user("secret-user", "hello there", expertise=1.0))
    store._connection().execute("DELETE FROM history WHERE user_id = 'secret-user'")
    assert any("secret-user" in f for f in store.check_integrity())
    health = store.health()
    assert health["ok"] is False
    assert health["findings"] == [
        "1 consistency problem(s) in the stored profiles "
        "(`langchain-pad profiles check` lists them)"
    ]
    store.put(user("other", "more text", expertise=1.0))  # not damage: writes go on


# ---------------------------------------------------------------------- not ours


def foreign_database(path: Path, *, tables: bool = True, user_version: int = 0) -> bytes:
    connection = sqlite3.connect(path)
    if tables:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        connection.execute("INSERT INTO notes (text) VALUES ('mine')")
    if user_version:
        connection.execute(f"PRAGMA user_version = {user_version}")
    connection.commit()
    connection.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("tables", "user_version", "says"),
    [
        (True, 0, "user_version 0 and tables: notes"),
        (True, 2, "user_version 2 and tables: notes"),
        (False, 7, "user_version 7 and tables: none"),
    ],
)
def test_another_programs_database_is_refused_untouched(tmp_path, tables, user_version, says):
    path = tmp_path / "theirs.db"
    before = foreign_database(path, tables=tables, user_version=user_version)
    with pytest.raises(ProfileStoreError) as raised:
        open_store(path)
    assert str(raised.value) == (
        f"{path} is not a langchain-pad profile store: it is a SQLite database with {says}. "
        "It was left untouched; pass the path of a profile store, or of a new file"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db"]  # no -wal, no -shm


def test_another_programs_application_id_is_refused(tmp_path):
    path = tmp_path / "theirs.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA application_id = 1234")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    with pytest.raises(ProfileStoreError, match="application_id is 0x4d2, another program's"):
        open_store(path)
    assert path.read_bytes() == before


def test_empty_files_are_initialised_and_marked_ours(tmp_path):
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    blank = tmp_path / "blank.sqlite3"
    sqlite3.connect(blank).close()  # a database without tables
    for path in (empty, blank, tmp_path / "new.sqlite3"):
        with open_store(path) as store:
            store.put(user("ana", "hello there", expertise=1.0))
            assert store._query("PRAGMA application_id")[0][0] == APPLICATION_ID


# ---------------------------------------------------------------------- read-only


def test_read_only_opens_for_reading_and_refuses_writes(sound_file, tmp_path):
    path = copy_of(sound_file, tmp_path)
    before = path.read_bytes()
    with open_store(path, read_only=True) as store:
        assert store.read_only
        assert store.get("u3") is not None and store.require("u3").version == 1
        assert len(store.list_profiles()) == 300
        assert store.match("topic 3 words " * 20).used[0] == "u3"
        assert [h.version for h in store.history("u3")] == [1]
        assert len(store.export_json()["profiles"]) == 300
        assert store.check_integrity() == []
        assert store.health()["ok"] is True and store.health()["read_only"] is True
        for name, write in every_write(store).items():
            with pytest.raises(ProfileStoreError) as raised:
                write()  # type: ignore[operator]
            assert str(raised.value) == (
                f"the profile store {path} is read-only (opened with read_only=True): it "
                "can be read, not written; open it with write access (a writable file and "
                "directory, read_only=False) to change it"
            ), name
    assert path.read_bytes() == before


def test_read_only_needs_an_existing_store(tmp_path):
    path = tmp_path / "missing.sqlite3"
    with pytest.raises(ProfileStoreError, match="does not exist or is empty, and it cannot be"):
        open_store(path, read_only=True)
    assert not path.exists()


READ_ONLY_CHILD = textwrap.dedent(
    """
    import os, sys
    from langchain_pad.profiles import ProfileStoreError, SQLiteProfileStore
    from langchain_pad.profiles.testing import HashingEmbedder, user

    os.setgid(65534)
    os.setuid(65534)  # nobody: permission bits now stop writes
    store = SQLiteProfileStore(sys.argv[1], embedder=HashingEmbedder(), reward_model=None)
    print("read_only", store.read_only)
    print("version", store.require("u3").version)
    print("match", store.match("topic 3 words " * 20).used[0])
    print("check", store.check_integrity())
    try:
        store.put(user("new", "hello there", expertise=1.0))
    except ProfileStoreError as exc:
        print("refused", exc)
    try:
        SQLiteProfileStore(sys.argv[2], reward_model=None)
    except ProfileStoreError as exc:
        print("missing", exc)
    """
)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to setuid")
def test_a_read_only_directory_as_another_user(sound_file):
    """As root chmod stops nothing, so a child drops to ``nobody`` (after its imports:
    the interpreter may live where nobody can read)."""
    with tempfile.TemporaryDirectory() as top:
        directory = Path(top) / "ro"
        directory.mkdir()
        path = directory / "profiles.sqlite3"
        path.write_bytes(sound_file.read_bytes())
        os.chmod(top, 0o755)
        os.chmod(path, 0o444)
        os.chmod(directory, 0o555)
        before = path.read_bytes()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        result = subprocess.run(
            [sys.executable, "-c", READ_ONLY_CHILD, str(path), str(directory / "new.sqlite3")],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[:4] == ["read_only True", "version 1", "match u3", "check []"]
        assert lines[4] == (
            f"refused the profile store {path} is read-only (the file is not writable): it "
            "can be read, not written; open it with write access (a writable file and "
            "directory, read_only=False) to change it"
        )
        assert lines[5] == (
            f"missing the profile store {directory / 'new.sqlite3'} does not exist or is "
            f"empty, and it cannot be created: its directory {directory} is not writable; "
            "create it with write access first"
        )
        assert path.read_bytes() == before
        assert sorted(p.name for p in directory.iterdir()) == ["profiles.sqlite3"]


# ---------------------------------------------------------------------- paths


def test_a_path_under_a_regular_file_is_named(tmp_path):
    note = tmp_path / "x.txt"
    note.write_text("a file")
    path = note / "profiles.sqlite3"
    with pytest.raises(ProfileStoreError) as raised:
        open_store(path)
    assert str(raised.value) == (
        f"cannot use {path} as a profile store: {note} is a file, not a directory; pass a "
        f"path inside a directory, e.g. {tmp_path / 'profiles.sqlite3'}"
    )
    with pytest.raises(ProfileStoreError, match="is a file, not a directory"):
        open_store(note / "deeper" / "profiles.sqlite3")
    assert note.read_text() == "a file"


def test_a_directory_is_not_a_store_file(tmp_path):
    with pytest.raises(ProfileStoreError, match="it is a directory; pass a file path such as"):
        open_store(tmp_path)


# ---------------------------------------------------------------------- CLI


def test_profiles_check_reports_and_never_writes(sound_file, tmp_path, capsys):
    path = copy_of(sound_file, tmp_path)
    assert cli.main(["profiles", "--store", str(path), "check"]) == 0
    assert capsys.readouterr().out == f"{path}: ok (300 profiles)\n"
    overwrite_middle(path)
    before = path.read_bytes()
    assert cli.main(["profiles", "--store", str(path), "check"]) == 1
    out = capsys.readouterr().out
    assert "problem: table profiles is unreadable" in out
    assert f"problem(s) in {path}: restore it from a backup" in out
    assert path.read_bytes() == before
    theirs = tmp_path / "theirs.db"
    foreign_database(theirs)
    assert cli.main(["profiles", "--store", str(theirs), "check"]) == 2
    assert "is not a langchain-pad profile store" in capsys.readouterr().err
