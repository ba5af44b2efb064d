"""An LCEL chain personalized per user: the same chain, each user's own ``w_p``.

Run: `.venv/bin/python examples/personalized_chain.py [max_tokens]`.

Three ways to say whom the answer is for: explicit weights bound to the model, a user
id looked up in a profile store, and a user id per input of one batch (the two users
are decoded together, one forward pass per step, each row with its own ``w_p``).
"""

from __future__ import annotations

import sys

from _demo import reward_model_dir
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_pad import PADChatModel
from langchain_pad.models import resolve_reward_model
from langchain_pad.profiles import InMemoryProfileStore, PreferenceProfile, reward_model_ref

QUESTION = "Why do we have seasons?"


def main(max_tokens: int = 48) -> None:
    persrm = reward_model_dir()
    ref = reward_model_ref(resolve_reward_model(persrm))
    store = InMemoryProfileStore(reward_model=persrm)  # seeds its anchors, if it has any
    store.put(PreferenceProfile(user_id="ana", weights={"expertise": 1.0}, reward_model=ref))
    store.put(PreferenceProfile(user_id="ben", weights={"expertise": -1.0}, reward_model=ref))

    llm = PADChatModel(max_tokens=max_tokens, reward_model=persrm, profile_store=store)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant."), ("human", "{question}")]
    )

    # 1. weights bound to the model: one chain per preference
    expert_chain = prompt | llm.bind(weights={"expertise": 1.0}) | StrOutputParser()
    print(f"[weights expertise=+1] {expert_chain.invoke({'question': QUESTION})}")

    # 2. one chain for everyone; the user id travels in the config
    chain = prompt | llm | StrOutputParser()
    print(
        f"[user ana] {chain.invoke({'question': QUESTION}, {'configurable': {'user_id': 'ana'}})}"
    )

    # 3. two users in one batch: decoded together, each with their own w_p
    answers = chain.batch(
        [{"question": QUESTION}, {"question": QUESTION}],
        [{"configurable": {"user_id": "ana"}}, {"configurable": {"user_id": "ben"}}],
    )
    for user, answer in zip(("ana", "ben"), answers, strict=True):
        print(f"[batch {user}] {answer}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
