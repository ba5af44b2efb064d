"""Every example runs as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_quickstart_runs_and_prints_answers():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "12"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert any(line.startswith("[rainbows] ") for line in lines)
    assert any(line.startswith("[volcanoes] ") for line in lines)
    assert len(lines[0]) > 10  # the streamed answer


def run_example(name: str, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return [line for line in out.stdout.splitlines() if line.strip()]


def answer_of(lines: list[str], prefix: str) -> str:
    found = [line for line in lines if line.startswith(prefix)]
    assert found, (prefix, lines)
    text = found[0][len(prefix) :].strip()
    assert text
    return text


def test_personalized_chain_answers_each_user_in_one_chain():
    lines = run_example("personalized_chain.py", "16")
    bound = answer_of(lines, "[weights expertise=+1]")
    assert answer_of(lines, "[user ana]") == bound  # ana's stored w_p is the same
    assert answer_of(lines, "[batch ana]") == bound  # batched with ben, still hers
    assert answer_of(lines, "[batch ben]") != bound


def test_study_agent_calls_its_tools_and_answers_each_user():
    lines = run_example("study_agent.py", "96")
    assert "results=['84']" in answer_of(lines, "[kid] What is 12 * 7?")
    assert "84" in answer_of(lines, "[kid answer]")
    assert answer_of(lines, "[kid answer]") != answer_of(lines, "[expert answer]")


def test_langgraph_agent_serves_two_users():
    lines = run_example("langgraph_two_users.py", "40")
    assert answer_of(lines, "[ana@example.org]") != answer_of(lines, "[ben]")
    assert answer_of(lines, "[new user, matched to ['ben']]")


def test_profiles_are_saved_retrieved_and_matched(tmp_path):
    lines = run_example("profiles.py", str(tmp_path / "profiles.sqlite3"))
    assert "informativeness': -1.0" in answer_of(lines, "[get] ben v2:")
    assert answer_of(lines, "[list]") == "['ana', 'ben', 'cleo']"
    matches = [line for line in lines if line.startswith("[match]")]
    assert any("-> ana" in m for m in matches)
    assert any("-> ben" in m for m in matches)
    assert any("-> cleo" in m for m in matches)


def test_feedback_loop_learns_the_users_weights():
    lines = run_example("feedback_loop.py", "16")
    rounds = [line for line in lines if line.startswith("[round")]
    assert len(rounds) == 4
    learned = answer_of(lines, "[learned] dana:")
    assert "after" in learned
    weights = eval(learned.split(" after")[0])  # a printed dict of floats
    assert weights["expertise"] < 0  # the user kept choosing the elementary answer
    assert answer_of(lines, "[answer for dana]")


def test_openai_client_example_talks_to_the_server():
    lines = run_example("openai_server.py", "16")
    assert answer_of(lines, "[models]") == "smollm2-135m-instruct"
    assert answer_of(lines, "[expert]") != answer_of(lines, "[beginner]")
    assert answer_of(lines, "[stream]") == answer_of(lines, "[expert]")
    assert "changed the base model's choice" in answer_of(lines, "[rewards]")
