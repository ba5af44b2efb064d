"""A feedback loop that learns a user's ``w_p`` from which answer they preferred.

Run: `.venv/bin/python examples/feedback_loop.py [max_tokens]`.

Each round the model answers one question twice, steered toward the two poles of the
expertise axis; the (simulated) user picks one; the store keeps the pair and refits
the user's ``w_p`` (stage 2: a small logistic regression over the pairs' PAD
features, milliseconds). Here the user always prefers the answer decoded toward the
elementary pole, and the learned expertise weight moves below zero round by round.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _demo import reward_model_dir

from langchain_pad import PADChatModel
from langchain_pad.models import resolve_reward_model
from langchain_pad.profiles import SQLiteProfileStore, Stage2Learner

QUESTIONS = [
    "What is photosynthesis?",
    "How does a vaccine work?",
    "What is inflation?",
    "Why is the sky blue?",
]
POLES = {"elementary": {"expertise": -1.0}, "expert": {"expertise": 1.0}}  # the poles


def main(max_tokens: int = 32) -> None:
    persrm = reward_model_dir()
    llm = PADChatModel(max_tokens=max_tokens, reward_model=persrm)
    # the same PersRM object the chat model decodes with (its runtime loads it once)
    runtime = llm.get_runtime()
    reward_model = runtime.reward_model(persrm)
    learner = Stage2Learner(
        reward_model, runtime.loaded.tokenizer, reward_model_dir=resolve_reward_model(persrm)
    )
    path = Path(tempfile.mkdtemp(prefix="pad-feedback-")) / "profiles.sqlite3"
    with SQLiteProfileStore(path, learner=learner) as store:
        for round_, question in enumerate(QUESTIONS, start=1):
            simple, expert = (
                llm.invoke(question, weights=POLES["elementary"]).content,
                llm.invoke(question, weights=POLES["expert"]).content,
            )
            if simple == expert:
                print(f"[round {round_}] both answers are the same; no preference to learn")
                continue
            profile = store.record_feedback("dana", question, str(simple), str(expert))
            weights = {axis: round(w, 3) for axis, w in profile.weights.items()}
            print(
                f"[round {round_}] dana preferred the simpler answer; "
                f"w_p v{profile.version}: {weights}"
            )
        profile = store.require("dana")
        print(f"[learned] dana: {profile.weights} after {profile.feedback_count} judgements")
        answer = llm.invoke(QUESTIONS[0], weights=profile.weights).content
        print(f"[answer for dana] {answer}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 32)
