"""The `langchain-pad` parser: every command group is there and every command runs a handler."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from langchain_pad.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*path, name))


def test_every_command_has_a_handler():
    leaves = dict(_commands(build_parser()))
    assert {path[0] for path in leaves} == {
        "demo",
        "data",
        "train",
        "calibrate",
        "models",
        "serve",
        "profiles",
    }
    for path, parser in leaves.items():
        assert callable(parser.get_default("handler")), path


def test_python_dash_m_runs_the_command():
    # the server's tests, examples and benchmarks start it this way
    result = subprocess.run(
        [sys.executable, "-m", "langchain_pad.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--unknown-user" in result.stdout


@pytest.mark.parametrize(
    ("flags", "gate", "compiled"),
    [((), True, False), (("--no-gate",), False, False), (("--compile-steps",), True, True)],
)
def test_serve_runtime_flags_reach_the_runtime(monkeypatch, flags, gate, compiled):
    from langchain_pad.cli import main
    from langchain_pad.integrations import server

    served = {}
    monkeypatch.setattr(server, "serve", lambda settings, **_: served.update(settings=settings))
    assert main(["serve", "--reward-model", "none", *flags]) == 0
    settings = served["settings"]
    assert settings.gate is gate and settings.compile_steps is compiled
    # the app builds its runtime from the settings (the model loads on first use only)
    app = server.create_app(settings)
    assert app.state.pad.runtime.gate is gate
    assert app.state.pad.runtime.compile_steps is compiled
