"""PADChatModel with a profile store: user_id, preference and configurable, on a tiny model."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.runnables import RunnableLambda

from langchain_pad import PADChatModel
from langchain_pad.models import LoadedModel
from langchain_pad.profiles import InMemoryProfileStore, PreferenceProfile, UnknownProfileError
from langchain_pad.profiles.testing import ANCHORS, REWARD_MODEL, HashingEmbedder

from .conftest import EOS_ID
from .test_reward_model import perturbed

ANA = {"expertise": 2.0, "informativeness": -1.0, "style": 0.5}


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("persrm")
    perturbed(tiny_model, scale=0.5).save(directory)
    return str(directory)


@pytest.fixture
def store():
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=ANCHORS)
    store.put(PreferenceProfile(user_id="ana", weights=ANA, reward_model=REWARD_MODEL))
    return store


@pytest.fixture
def llm(monkeypatch, tiny_model, byte_tokenizer, reward_model_dir, store):
    loaded = LoadedModel(
        name="tiny",
        location="tiny-profiles",
        model=tiny_model,
        tokenizer=byte_tokenizer,
        eos_token_ids=frozenset({EOS_ID}),
        context_length=128,
    )
    monkeypatch.setattr(PADChatModel, "_loaded", lambda self, name=None: loaded)
    return PADChatModel(max_tokens=6, reward_model=reward_model_dir, profile_store=store)


def profile_of(message):
    return message.response_metadata.get("pad_profile")


def test_user_id_per_call_uses_the_stored_profile(llm):
    answer = llm.invoke("hi", user_id="ana")
    assert profile_of(answer) == {
        "source": "user_id",
        "user_id": "ana",
        "version": 1,
        "reward_model_id": REWARD_MODEL.id,
    }
    assert answer.response_metadata["pad_weights"] == ANA
    assert answer.content == llm.invoke("hi", weights=ANA).content


def test_bind_and_configurable_reach_the_model(llm):
    assert profile_of(llm.bind(user_id="ana").invoke("hi"))["user_id"] == "ana"
    config = {"configurable": {"user_id": "ana"}}
    assert profile_of(llm.invoke("hi", config=config))["user_id"] == "ana"
    chain = RunnableLambda(lambda text: text + "!") | llm
    assert profile_of(chain.invoke("hi", config=config))["user_id"] == "ana"
    chunks = list(chain.stream("hi", config=config))
    assert profile_of(chunks[-1])["user_id"] == "ana"
    assert profile_of(asyncio.run(chain.ainvoke("hi", config=config)))["user_id"] == "ana"
    assert profile_of(llm.with_config(config).invoke("hi"))["user_id"] == "ana"


def test_a_call_parameter_beats_configurable(llm, store):
    store.put(PreferenceProfile(user_id="bob", weights={"style": 1.0}, reward_model=REWARD_MODEL))
    answer = llm.invoke("hi", user_id="bob", config={"configurable": {"user_id": "ana"}})
    assert profile_of(answer)["user_id"] == "bob"


def test_profile_version_follows_the_store(llm, store):
    store.put(PreferenceProfile(user_id="ana", weights={"style": -1.0}, reward_model=REWARD_MODEL))
    answer = llm.invoke("hi", user_id="ana")
    assert profile_of(answer)["version"] == 2
    assert answer.response_metadata["pad_weights"]["style"] == -1.0


def test_preference_text_is_matched_in_the_store(llm):
    answer = llm.invoke("hi", preference="plain words please")
    info = profile_of(answer)
    assert info["source"] == "preference"
    assert info["used"][0] == "anchor:expertise:elementary"
    assert info["matches"][0]["similarity"] > 0.9
    assert 0 < info["matches"][0]["probability"] <= 1  # the anchors were ranked
    assert 0 < info["matches"][0]["score"] <= 1
    assert answer.response_metadata["pad_weights"]["expertise"] < 0
    in_chain = llm.invoke("hi", config={"configurable": {"preference": "plain words please"}})
    assert profile_of(in_chain)["source"] == "preference"


def test_unmatched_preference_means_no_personalization(llm):
    answer = llm.invoke("hi", preference="zebra quantum lasagna")
    assert profile_of(answer)["source"] == "none"
    assert "pad_weights" not in answer.response_metadata


def test_resolution_order(llm):
    resolve = llm._resolve_preference
    assert resolve({}) == (None, None)
    weights, info = resolve({"weights": {"style": 1.0}, "user_id": "ana"})
    assert weights == {"style": 1.0} and info == {"source": "weights"}
    weights, info = resolve({"user_id": "ana", "preference": "plain words please"})
    assert weights == ANA and info["source"] == "user_id"


def test_unknown_user_is_an_error_or_the_fallback(llm):
    with pytest.raises(UnknownProfileError, match="no preference profile is stored for user 'zoe'"):
        llm.invoke("hi", user_id="zoe")
    fallback = llm.model_copy(update={"on_unknown_user": "fallback"})
    answer = fallback.invoke("hi", user_id="zoe", preference="plain words please")
    assert profile_of(answer)["source"] == "preference"
    assert profile_of(answer)["unknown_user_id"] == "zoe"
    assert profile_of(fallback.invoke("hi", user_id="zoe"))["source"] == "none"


def test_user_id_without_a_store_says_what_to_pass():
    with pytest.raises(ValueError, match="profile_store="):
        PADChatModel()._resolve_preference({"user_id": "ana"})


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
