"""PADChatModel with a profile store: user_id, preference and configurable, on a tiny model."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import ConfigurableField, RunnableLambda

from langchain_pad import PADChatModel
from langchain_pad.models import LoadedModel
from langchain_pad.preferences import PreferenceQuery, PreferenceResolver, ProfileMismatchError
from langchain_pad.profiles import (
    InMemoryProfileStore,
    PreferenceProfile,
    UnknownProfileError,
    reward_model_ref,
)
from langchain_pad.profiles.testing import ANCHORS, REWARD_MODEL, HashingEmbedder
from langchain_pad.runtime import PADRuntime

from .conftest import EOS_ID
from .test_reward_model import calibrate_uniform, perturbed

ANA = {"expertise": 0.5, "informativeness": -0.25, "style": 0.125}


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("persrm")
    perturbed(tiny_model, scale=0.5).save(directory)
    calibrate_uniform(directory)
    return str(directory)


@pytest.fixture(scope="module")
def ref(reward_model_dir):
    """The tiny PersRM's own id: profiles must name the reward model they belong to."""
    return reward_model_ref(reward_model_dir)


@pytest.fixture
def store(ref):
    anchors = [a.model_copy(update={"reward_model": ref}) for a in ANCHORS]
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=anchors)
    store.put(PreferenceProfile(user_id="ana", weights=ANA, reward_model=ref))
    return store


@pytest.fixture(scope="module")
def runtime(tiny_model, byte_tokenizer):
    loaded = LoadedModel(
        name="tiny",
        location="tiny-profiles",
        model=tiny_model,
        tokenizer=byte_tokenizer,
        eos_token_ids=frozenset({EOS_ID}),
        context_length=128,
    )
    runtime = PADRuntime.from_loaded(loaded)
    yield runtime
    runtime.close()


@pytest.fixture
def llm(runtime, reward_model_dir, store):
    return PADChatModel(
        runtime=runtime, max_tokens=6, reward_model=reward_model_dir, profile_store=store
    )


def profile_of(message):
    return message.response_metadata.get("pad_profile")


def test_user_id_per_call_uses_the_stored_profile(llm):
    answer = llm.invoke("hi", user_id="ana")
    assert profile_of(answer) == {
        "source": "user_id",
        "user_id": "ana",
        "version": 1,
        "reward_model_id": reward_model_ref(llm.reward_model).id,
    }
    assert answer.response_metadata["pad_strengths"] == ANA
    assert answer.content == llm.invoke("hi", weights=ANA).content


def test_bind_and_configurable_reach_the_model(llm):
    assert profile_of(llm.bind(user_id="ana").invoke("hi"))["user_id"] == "ana"
    config = {"configurable": {"user_id": "ana"}}
    # a direct call reads `configurable` through LangChain's configurable fields
    per_user = llm.configurable_fields(user_id=ConfigurableField(id="user_id"))
    assert profile_of(per_user.invoke("hi", config=config))["user_id"] == "ana"
    generated = llm.generate([[HumanMessage("hi")]], user_id="ana").generations[0][0]
    assert profile_of(generated.message)["user_id"] == "ana"
    chain = RunnableLambda(lambda text: text + "!") | llm
    assert profile_of(chain.invoke("hi", config=config))["user_id"] == "ana"
    chunks = list(chain.stream("hi", config=config))
    assert profile_of(chunks[-1])["user_id"] == "ana"
    assert profile_of(asyncio.run(chain.ainvoke("hi", config=config)))["user_id"] == "ana"
    assert profile_of(per_user.with_config(config).invoke("hi"))["user_id"] == "ana"
    # inside a chain, generate() sees the run's configurable too
    generating = RunnableLambda(lambda _: llm.generate([[HumanMessage("hi")]]))
    result = generating.invoke("x", config=config)
    assert profile_of(result.generations[0][0].message)["user_id"] == "ana"


def test_a_call_parameter_beats_configurable(llm, store, ref):
    store.put(PreferenceProfile(user_id="bob", weights={"style": 1.0}, reward_model=ref))
    chain = RunnableLambda(lambda text: text) | llm.bind(user_id="bob")
    answer = chain.invoke("hi", config={"configurable": {"user_id": "ana"}})
    assert profile_of(answer)["user_id"] == "bob"


def test_a_call_parameter_beats_the_instance_weights(llm):
    weighted = llm.model_copy(update={"weights": {"style": -0.75}})
    answer = weighted.invoke("hi", user_id="ana")
    assert profile_of(answer)["source"] == "user_id"
    assert answer.response_metadata["pad_strengths"] == ANA
    assert weighted.invoke("hi").response_metadata["pad_strengths"]["style"] == -0.75


def test_a_profile_of_another_reward_model_is_refused(llm, store):
    store.put(PreferenceProfile(user_id="cy", weights={"style": 1.0}, reward_model=REWARD_MODEL))
    with pytest.raises(ProfileMismatchError, match=r"learned for reward model test-rm-0001"):
        llm.invoke("hi", user_id="cy")


def test_profile_version_follows_the_store(llm, store, ref):
    store.put(PreferenceProfile(user_id="ana", weights={"style": -1.0}, reward_model=ref))
    answer = llm.invoke("hi", user_id="ana")
    assert profile_of(answer)["version"] == 2
    assert answer.response_metadata["pad_strengths"]["style"] == -1.0


def test_preference_text_is_matched_in_the_store(llm):
    answer = llm.invoke("hi", preference="plain words please")
    info = profile_of(answer)
    assert info["source"] == "preference"
    assert info["used"][0] == "anchor:expertise:elementary"
    assert info["matches"][0]["similarity"] > 0.9
    assert 0 < info["matches"][0]["probability"] <= 1  # the anchors were ranked
    assert 0 < info["matches"][0]["score"] <= 1
    assert answer.response_metadata["pad_weights"]["expertise"] < 0
    chain = RunnableLambda(lambda text: text) | llm
    in_chain = chain.invoke("hi", config={"configurable": {"preference": "plain words please"}})
    assert profile_of(in_chain)["source"] == "preference"


def test_unmatched_preference_means_no_personalization(llm):
    answer = llm.invoke("hi", preference="zebra quantum lasagna")
    assert profile_of(answer)["source"] == "none"
    assert "pad_weights" not in answer.response_metadata


def test_resolution_order(store, ref):
    resolver = PreferenceResolver(store)

    from langchain_pad.calibration import PoleCalibration

    calibration = PoleCalibration(ref.axes, (2.0, 2.0, 2.0), (4.0, 4.0, 4.0))

    def resolve(**query):
        return resolver.resolve(
            PreferenceQuery(**query),
            axes=ref.axes,
            reward_model_id=ref.id,
            calibration=calibration,
        )

    assert resolve().weights is None and resolve().metadata is None
    explicit = resolve(weights={"style": 1.0}, user_id="ana")
    assert explicit.strengths == (0.0, 0.0, 1.0) and explicit.metadata == {"source": "weights"}
    assert explicit.weights == (0.0, 0.0, 4.0)  # the high pole's raw weight
    low = resolve(weights={"style": -0.5})
    assert low.weights == (0.0, 0.0, -1.0)  # half the low pole's
    raw = resolve(raw_weights={"style": 7.0}, weights={"style": 1.0})
    assert raw.weights == (0.0, 0.0, 7.0) and raw.strengths is None
    assert raw.source == "raw_weights"
    profile = resolve(user_id="ana", preference="plain words please")
    assert profile.strengths == tuple(ANA.values()) and profile.source == "user_id"
    assert resolve(preference="plain words please").source == "preference"
    with pytest.raises(ValueError, match=r"must be a strength in \[-1, 1\], got 2"):
        resolve(weights={"style": 2})
    # per call beats per instance, whatever the instance named
    call, instance = PreferenceQuery(user_id="ana"), PreferenceQuery(weights={"style": 1.0})
    assert call.over(instance) is call and PreferenceQuery().over(instance) is instance


def test_unknown_user_is_an_error_or_the_fallback(llm):
    with pytest.raises(UnknownProfileError, match="no preference profile is stored for user 'zoe'"):
        llm.invoke("hi", user_id="zoe")
    fallback = llm.model_copy(update={"unknown_user": "fallback"})
    answer = fallback.invoke("hi", user_id="zoe", preference="plain words please")
    assert profile_of(answer)["source"] == "preference"
    assert profile_of(answer)["unknown_user_id"] == "zoe"
    assert profile_of(fallback.invoke("hi", user_id="zoe"))["source"] == "none"


def test_user_id_without_a_store_says_what_to_pass(ref):
    with pytest.raises(ValueError, match="profile_store="):
        PreferenceResolver().resolve(
            PreferenceQuery(user_id="ana"), axes=ref.axes, reward_model_id=ref.id
        )


def test_the_old_unknown_user_name_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="unknown_user"):
        llm = PADChatModel(on_unknown_user="raise")
    assert llm.unknown_user == "error"


def test_async_preference_is_embedded_off_the_event_loop(llm, store, monkeypatch):
    import threading

    loop_threads = []
    embed = store._embed

    def recording_embed(texts):
        loop_threads.append(threading.current_thread() is threading.main_thread())
        return embed(texts)

    monkeypatch.setattr(store, "_embed", recording_embed)
    answer = asyncio.run(llm.ainvoke("hi", preference="plain words please"))
    assert profile_of(answer)["source"] == "preference"
    assert loop_threads == [False]  # embedded once, in a worker thread; then cached


def test_async_and_default_user(llm):
    defaulted = llm.model_copy(update={"user_id": "ana"})
    answer = asyncio.run(defaulted.ainvoke("hi"))
    assert profile_of(answer)["user_id"] == "ana"


def test_each_input_of_a_batch_reads_its_own_configurable(llm, store, ref):
    store.put(PreferenceProfile(user_id="ben", weights={"expertise": -0.5}, reward_model=ref))
    chain = RunnableLambda(lambda text: text) | llm
    configs = [{"configurable": {"user_id": "ana"}}, {"configurable": {"user_id": "ben"}}]
    answers = chain.batch(["hi", "hi"], configs)
    assert [profile_of(a)["user_id"] for a in answers] == ["ana", "ben"]
    answers = asyncio.run(chain.abatch(["hi", "hi"], configs))
    assert [profile_of(a)["user_id"] for a in answers] == ["ana", "ben"]
    direct = llm.batch(["hi", "hi"], configs)  # LangChain's own configurable, per input
    assert [profile_of(a)["user_id"] for a in direct] == ["ana", "ben"]
