"""The contract every ``ProfileStore`` backend must pass: versions, matching, feedback,
export/import and the async API (see :mod:`langchain_pad.profiles.testing`)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from langchain_pad.profiles.base import BaseProfileStore
from langchain_pad.profiles.protocol import (
    ProfileStoreError,
    UnknownProfileError,
    VersionConflictError,
)
from langchain_pad.profiles.testing.fakes import (
    ANCHORS,
    REWARD_MODEL,
    CountingLearner,
    HashingEmbedder,
    user,
)

__all__ = ["BaseContract"]


class BaseContract:
    """Behaviour every profile store must have. Subclass and define :meth:`make_store`."""

    def make_store(self, tmp_path: Path, **kwargs: Any) -> BaseProfileStore:
        raise NotImplementedError

    def store(self, tmp_path: Path, **kwargs: Any) -> BaseProfileStore:
        """A store without a reward model (so without anchors) unless ``kwargs`` say."""
        kwargs.setdefault("embedder", HashingEmbedder())
        kwargs.setdefault("reward_model", None)
        return self.make_store(tmp_path, **kwargs)

    def test_implements_the_protocol(self, tmp_path: Path) -> None:
        from langchain_pad.profiles.protocol import ProfileStore

        assert isinstance(self.store(tmp_path), ProfileStore)

    # ------------------------------------------------------------------ versions

    def test_put_and_get_round_trip_any_user_id(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        for uid in ("ana", "José Ñúñez", "用户-42", "a@b.c/d e", "🙂"):
            stored = store.put(user(uid, "short answers", informativeness=-0.75))
            assert stored.version == 1
            got = store.get(uid)
            assert got is not None
            assert got.user_id == uid
            assert got.weights == {"expertise": 0.0, "informativeness": -0.75, "style": 0.0}
            assert got.embedding is not None and len(got.embedding) == 256
        assert store.get("nobody") is None
        try:
            store.require("nobody")
        except UnknownProfileError as exc:
            assert "nobody" in str(exc)
        else:
            raise AssertionError("require of an unknown user must raise")

    def test_each_put_is_a_new_version_and_history_keeps_them_all(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        first = store.put(user("ana", expertise=0.5))
        second = store.put(user("ana", expertise=1.0))
        assert (first.version, second.version) == (1, 2)
        assert second.created_at == first.created_at
        assert second.updated_at >= first.updated_at
        history = store.history("ana")
        assert [h.version for h in history] == [1, 2]
        assert [h.profile.weights["expertise"] for h in history if h.profile] == [0.5, 1.0]
        store.delete("ana")
        assert store.get("ana") is None
        assert [h.reason for h in store.history("ana")] == ["put", "put", "delete"]
        assert store.check_integrity() == []

    def test_expected_version_detects_a_concurrent_writer(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        store.put(user("ana"), expected_version=0)
        try:
            store.put(user("ana"), expected_version=0)
        except VersionConflictError as exc:
            assert "version 1" in str(exc)
        else:
            raise AssertionError("a stale expected_version must conflict")
        assert store.put(user("ana"), expected_version=1).version == 2

    def test_list_count_and_kinds(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        assert store.seed_anchors(ANCHORS) == len(ANCHORS)
        store.put(user("bob"))
        store.put(user("ana"))
        assert [p.user_id for p in store.list_profiles(kind="user")] == ["ana", "bob"]
        assert store.count(kind="anchor") == len(ANCHORS)
        assert store.count() == len(ANCHORS) + 2
        assert len(store.list_profiles(limit=2, offset=1)) == 2

    def test_seeding_anchors_is_idempotent(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        assert store.seed_anchors(ANCHORS) == len(ANCHORS)
        assert store.seed_anchors(ANCHORS) == 0
        assert store.count(kind="anchor") == len(ANCHORS)
        assert all(len(store.history(a.user_id)) == 1 for a in ANCHORS)
        changed = ANCHORS[0].model_copy(update={"description": "very simple words"})
        assert store.seed_anchors([changed]) == 1
        assert store.require(changed.user_id).version == 2

    def test_put_many_writes_versions_and_descriptions(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        profiles = [user(f"u{i}", f"topic{i} words", style=i / 25) for i in range(25)]
        assert store.put_many(profiles, batch_size=10) == 25
        assert store.count() == 25
        assert store.match("topic7 words").used == ["u7"]
        vectors = HashingEmbedder().embed(["other text"] * 2)
        store.put_many([user("u1", "other text"), user("v", "other text")], vectors=vectors)
        assert store.require("u1").version == 2
        assert sorted(store.match("other text", top_k=2).used) == ["u1", "v"]
        assert store.check_integrity() == []

    # ------------------------------------------------------------------ matching

    def test_match_finds_the_nearest_profile_and_its_weights(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        store.seed_anchors(ANCHORS)
        result = store.match("please use plain words")  # an alias of the elementary anchor
        assert result.matched and result.best is not None
        assert result.best.profile.user_id == "anchor:expertise:elementary"
        assert result.best.matched_text == "plain words please"
        assert result.weights is not None and result.weights["expertise"] < -0.5

    def test_match_says_no_match_below_the_threshold(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        store.seed_anchors(ANCHORS)
        result = store.match("zebra quantum lasagna")
        assert not result.matched and result.weights is None and result.used == []

    def test_match_averages_near_profiles_by_similarity(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        store.put(user("a", "short brief answers", informativeness=-1.0))
        store.put(user("b", "short brief answers", informativeness=-0.5))
        result = store.match("short brief answers", top_k=2)
        assert sorted(result.used) == ["a", "b"]
        assert result.weights is not None
        assert abs(result.weights["informativeness"] + 0.75) < 1e-6

    def test_match_follows_changes_to_the_store(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        store.put(user("ana", "warm friendly tone", style=1.0))
        assert store.match("warm friendly tone").used == ["ana"]
        store.put(user("ana", "technical depth", expertise=1.0))  # description changed
        assert store.match("warm friendly tone").weights is None
        store.put(user("bob", "warm friendly tone", style=1.0))
        assert store.match("warm friendly tone").used == ["bob"]
        store.delete("bob")
        assert store.match("warm friendly tone").weights is None
        only_users = store.match("technical depth", kind="anchor")
        assert only_users.matches == []

    # ------------------------------------------------------------------ feedback

    def test_feedback_refits_and_versions_the_profile(self, tmp_path: Path) -> None:
        learner = CountingLearner()
        store = self.store(tmp_path, learner=learner)
        for i in range(3):
            profile = store.record_feedback("ana", f"q{i}", "a longer answer", "short")
        assert profile.version == 3 and profile.feedback_count == 3
        assert profile.weights["expertise"] == 0.003
        assert learner.calls == [1, 2, 3]  # each refit sees every pair so far
        pairs = store.feedback("ana")
        assert [p.prompt for p in pairs] == ["q0", "q1", "q2"]
        assert [p.profile_version for p in pairs] == [1, 2, 3]
        assert pairs[0].features is not None and pairs[0].reward_model_id == REWARD_MODEL.id
        assert [h.reason for h in store.history("ana")] == ["feedback"] * 3
        assert store.check_integrity() == []

    def test_feedback_keeps_description_and_warm_starts(self, tmp_path: Path) -> None:
        store = self.store(tmp_path, learner=CountingLearner())
        store.put(user("ana", "warm friendly tone", style=0.75))
        profile = store.record_feedback("ana", "q", "yes", "no")
        assert profile.version == 2 and profile.weights["style"] == 0.75
        assert profile.description == "warm friendly tone"
        assert store.match("warm friendly tone").used == ["ana"]

    def test_a_failed_refit_writes_nothing(self, tmp_path: Path) -> None:
        store = self.store(tmp_path, learner=CountingLearner(fail=True))
        store.put(user("ana"))
        try:
            store.record_feedback("ana", "q", "yes", "no")
        except RuntimeError:
            pass
        else:
            raise AssertionError("the failing refit must raise")
        assert store.require("ana").version == 1
        assert store.feedback("ana") == []
        assert store.check_integrity() == []

    def test_feedback_needs_a_learner_and_a_user(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        for args, message in (
            (("ana", "q", "a", "b"), "learner"),
            (("anchor:x", "q", "a", "b"), "anchor"),
        ):
            try:
                store.record_feedback(*args)
            except ProfileStoreError as exc:
                assert message in str(exc)
            else:
                raise AssertionError(f"{args} must be refused")

    def test_concurrent_feedback_and_reads_from_threads_lose_nothing(self, tmp_path: Path) -> None:
        store = self.store(tmp_path, learner=CountingLearner())
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(25):
                    store.record_feedback("ana", f"t{n}-{i}", "longer", "short")
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        seen: list[int] = []
        done = threading.Event()

        def read() -> None:  # a reader alongside the writers sees versions only grow
            try:
                while not done.is_set():
                    profile = store.get("ana")
                    if profile is not None:
                        seen.append(profile.version)
            except BaseException as exc:
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        reader.join()
        assert errors == []
        assert seen == sorted(seen)
        profile = store.require("ana")
        assert profile.version == 100 and profile.feedback_count == 100
        assert len(store.feedback("ana")) == 100
        assert store.check_integrity() == []

    # ------------------------------------------------------------------ export / import

    def test_export_and_import_round_trip(self, tmp_path: Path) -> None:
        source = self.store(tmp_path / "a", learner=CountingLearner())
        source.seed_anchors(ANCHORS)
        source.put(user("ana", "warm friendly tone", style=1.0))
        source.record_feedback("ana", "q", "yes", "no")
        data = source.export_json()
        target = self.store(tmp_path / "b")
        assert target.import_json(data) == len(ANCHORS) + 1
        ana = target.require("ana")
        assert ana.version == 2 and ana.feedback_count == 1
        assert [h.version for h in target.history("ana")] == [1, 2]
        assert len(target.feedback("ana")) == 1
        assert target.match("warm friendly tone").used == ["ana"]
        assert target.check_integrity() == []
        # importing again over existing profiles makes new versions and no duplicate pairs
        target.import_json(data)
        assert target.require("ana").version == 3
        assert len(target.feedback("ana")) == 1
        assert [h.reason for h in target.history("ana")][-1] == "import"
        assert target.check_integrity() == []

    def test_import_refuses_foreign_data(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        try:
            store.import_json({"format": "something-else"})
        except ValueError as exc:
            assert "not a langchain-pad profiles export" in str(exc)
        else:
            raise AssertionError("foreign data must be refused")

    # ------------------------------------------------------------------ health

    def test_health_of_a_sound_store(self, tmp_path: Path) -> None:
        store = self.store(tmp_path)
        store.put(user("ana", "short brief answers", informativeness=-1.0))
        health = store.health()
        assert set(health) == {"ok", "backend", "read_only", "findings", "checked_at"}
        assert health["ok"] is True and health["findings"] == []
        assert health["read_only"] is False and health["checked_at"] is None
        assert isinstance(health["backend"], str) and health["backend"] != "custom"
        refreshed = store.health(refresh=True)
        assert refreshed["ok"] is True and refreshed["checked_at"] is not None

    # ------------------------------------------------------------------ async

    def test_async_api(self, tmp_path: Path) -> None:
        store = self.store(tmp_path, learner=CountingLearner())

        async def scenario() -> None:
            await store.aput(user("ana", "short brief answers", informativeness=-1.0))
            got = await store.aget("ana")
            assert got is not None and got.version == 1
            await asyncio.gather(
                *(store.arecord_feedback("ana", f"q{i}", "yes", "no") for i in range(5))
            )
            assert (await store.arequire("ana")).version == 6
            assert len(await store.ahistory("ana")) == 6
            assert len(await store.afeedback("ana")) == 5
            assert (await store.amatch("short brief answers")).used == ["ana"]
            assert [p.user_id for p in await store.alist_profiles()] == ["ana"]

        asyncio.run(scenario())
