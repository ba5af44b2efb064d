"""SQLite store guarantees with real files and real processes: migrations, concurrent
writers in several processes, and a writer killed with SIGKILL in the middle of a write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from langchain_pad.profiles import PROFILES_ENV_VAR, SQLiteProfileStore, default_profiles_path
from langchain_pad.profiles.sqlite import MIGRATIONS, SCHEMA_VERSION
from langchain_pad.profiles.store import ProfileStoreError
from langchain_pad.profiles.testing import HashingEmbedder, user

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from langchain_pad.profiles import SQLiteProfileStore
    from langchain_pad.profiles.testing import CountingLearner

    path, name, count, stall_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    class Learner(CountingLearner):
        def refit(self, profile, feedback):
            if len(feedback) == stall_at:  # inside the write transaction
                print("stalled", flush=True)
                time.sleep(60)
            return super().refit(profile, feedback)

    store = SQLiteProfileStore(path, learner=Learner(), reward_model=None)
    print("ready", flush=True)
    for i in range(count):
        profile = store.record_feedback("shared user", f"{name}-{i}", "longer answer", "short")
        print("committed", profile.version, f"{name}-{i}", flush=True)
    """
)


def writer(path: Path, name: str, count: int, stall_at: int = -1) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), name, str(count), str(stall_at)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_four_processes_writing_feedback_lose_nothing(tmp_path):
    path = tmp_path / "profiles.sqlite3"
    SQLiteProfileStore(
        path, reward_model=None
    ).close()  # create the schema once, as an application would
    procs = [writer(path, f"p{n}", 200) for n in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    store = SQLiteProfileStore(path, reward_model=None)
    profile = store.require("shared user")
    assert profile.version == 800 and profile.feedback_count == 800
    prompts = {f.prompt for f in store.feedback("shared user")}
    assert prompts == {f"p{n}-{i}" for n in range(4) for i in range(200)}
    assert [h.version for h in store.history("shared user")] == list(range(1, 801))
    assert profile.weights["expertise"] == 0.8  # the last refit saw all 800 pairs
    committed = [line for out in outputs for line in out.splitlines() if "committed" in line]
    assert sorted(int(line.split()[1]) for line in committed) == list(range(1, 801))
    assert store.check_integrity() == []


def test_a_writer_killed_mid_write_leaves_every_committed_write(tmp_path):
    path = tmp_path / "profiles.sqlite3"
    proc = writer(path, "k", 100, stall_at=37)
    committed: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("committed"):
            committed.append(line.split()[2])
        if line.startswith("stalled"):
            break  # the 37th pair is written but its transaction is still open
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(committed) == 36

    store = SQLiteProfileStore(
        path, reward_model=None
    )  # recovers from the WAL of the killed writer
    assert store.check_integrity() == []
    profile = store.require("shared user")
    assert profile.version == 36 and profile.feedback_count == 36
    assert [f.prompt for f in store.feedback("shared user")] == committed
    # and the store takes writes again: the killed writer's lock died with it
    from langchain_pad.profiles.testing import CountingLearner

    after = store.record_feedback("shared user", "after", "a", "b", learner=CountingLearner())
    assert after.version == 37
    assert store.check_integrity() == []


def test_an_old_schema_is_migrated_with_its_data(tmp_path):
    path = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.executescript(MIGRATIONS[0])
    connection.execute("PRAGMA user_version = 1")
    connection.execute(
        "INSERT INTO feedback (user_id, prompt, chosen, rejected, profile_version, created_at) "
        "VALUES ('ana', 'q', 'a', 'b', 1, '2026-01-01T00:00:00+00:00')"
    )
    connection.close()
    store = SQLiteProfileStore(path, reward_model=None)
    version = store._query("PRAGMA user_version")[0][0]
    assert version == SCHEMA_VERSION == 2
    [record] = store.feedback("ana")
    assert record.prompt == "q" and record.features is None


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite3"
    SQLiteProfileStore(path, reward_model=None).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(ProfileStoreError, match="newer than this langchain-pad"):
        SQLiteProfileStore(path, reward_model=None)


def test_wal_and_durable_settings(tmp_path):
    store = SQLiteProfileStore(tmp_path / "p.sqlite3", reward_model=None)
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    assert store._query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_data_survives_reopening(tmp_path):
    path = tmp_path / "p.sqlite3"
    with SQLiteProfileStore(path, embedder=HashingEmbedder(), reward_model=None) as store:
        store.put(user("ana", "short brief answers", informativeness=-1.0))
    with SQLiteProfileStore(path, embedder=HashingEmbedder(), reward_model=None) as store:
        assert store.require("ana").weights["informativeness"] == -1.0
        assert store.match("short brief answers").used == ["ana"]
    with pytest.raises(ProfileStoreError, match="closed"):
        store.get("ana")


def test_default_path_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(PROFILES_ENV_VAR, str(tmp_path / "mine.sqlite3"))
    assert default_profiles_path() == tmp_path / "mine.sqlite3"
    assert SQLiteProfileStore(reward_model=None).path == tmp_path / "mine.sqlite3"
    monkeypatch.delenv(PROFILES_ENV_VAR)
    assert default_profiles_path().name == "profiles.sqlite3"
    assert "langchain-pad" in str(default_profiles_path())
