"""`integrations/` is one folder at the top level, imported as `langchain_pad.integrations`."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

import pytest

import langchain_pad

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_imports_the_top_level_folder_under_the_wheel_name():
    from langchain_pad.integrations import server

    assert not (ROOT / "langchain_pad" / "integrations").exists()  # no symlink, no copy
    assert Path(server.__file__).resolve() == ROOT / "integrations" / "server.py"
    assert server.__name__ == "langchain_pad.integrations.server"
    assert langchain_pad.integrations.server is server


def test_the_wheel_target_maps_the_folder_into_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"] == {"integrations": "langchain_pad/integrations"}
    assert "integrations" in config["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]


def test_a_built_wheel_holds_the_integrations(tmp_path):
    builders = pytest.importorskip("hatchling.builders.wheel")
    builder = builders.WheelBuilder(str(ROOT))
    (path,) = builder.build(directory=str(tmp_path), versions=["standard"])
    names = set(zipfile.ZipFile(path).namelist())
    for module in ("__init__", "server", "langgraph", "postgres"):
        assert f"langchain_pad/integrations/{module}.py" in names
    assert not any(n.startswith("integrations/") for n in names)
