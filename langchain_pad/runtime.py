"""PADRuntime: one base model, one decoding thread, every reward model it serves.

```python
from langchain_pad import PADChatModel, PADRuntime

runtime = PADRuntime(max_batch_size=16, batch_window=0.01)
plain = PADChatModel(runtime=runtime)
personal = PADChatModel(runtime=runtime, weights={"expertise": -1.0})
# plain and personalized calls decode in the same waves, on the same thread
```

Why one object: a process that runs two engines for one model runs two decoding
threads that fight for the same cores and never batch together. A runtime owns the
weights (through :func:`~langchain_pad.models.load_model`), the engine, the decoding
thread (:class:`~langchain_pad.engine.BatchScheduler`), the reward models loaded for
its base model and the batching settings, so plain rows and rows guided by any of its
reward models share one wave. ``PADChatModel()`` uses :meth:`PADRuntime.shared`, the
runtime created once per process for its model and dtype; build one yourself to choose
the batching settings, or to keep a model apart, and pass it to ``PADChatModel(runtime=
...)`` and to the server.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from langchain_pad.models import DEFAULT_MODEL, Dtype

if TYPE_CHECKING:
    from langchain_pad.calibration import PoleCalibration
    from langchain_pad.engine import (
        BatchScheduler,
        GenerationRequest,
        RequestTicket,
        TokenEvent,
    )
    from langchain_pad.engine.grammar import GrammarCompiler
    from langchain_pad.engine.tickets import EventSink
    from langchain_pad.models import LoadedModel
    from langchain_pad.profiles import InMemoryProfileStore, RewardModelRef
    from langchain_pad.reward_model import PersonalizedRewardModel
    from langchain_pad.tool_router import EmbeddingToolRouter

__all__ = ["PADRuntime"]

DEFAULT_TOKEN_BUDGET = 32768
"""Prompt + new tokens a runtime decodes at once by default. For the embedded model a
token costs about 46 KB of KV cache in float32 (30 layers x 2 x 3 heads x 64) and, on a
personalized prefill, 71 KB of trunk hidden states: 32k tokens stay near 4 GB, where six
8,000-word prompts took a server past 10 GB without a budget."""

DEFAULT_PREFILL_BUDGET = 8192
"""Prompt tokens (rows x longest prompt) one wave prefills in one forward pass by
default: a batch of short prompts still shares its prefill, while long prompts each get
their own (``BatchScheduler.prefill_budget``)."""

_LIVE: weakref.WeakSet[PADRuntime] = weakref.WeakSet()
"""Runtimes with a decoding thread, joined at interpreter exit (a daemon thread killed
inside a torch kernel aborts the process)."""


class PADRuntime:
    """One base model + dtype: its engine, decoding thread, reward models and batching."""

    _shared: ClassVar[dict[tuple[str, str], PADRuntime]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        dtype: Dtype = "float32",
        max_batch_size: int = 32,
        batch_window: float = 0.0,
        max_waves: int = 1,
        candidates: int = 10,
        stats_window: int = 256,
        token_budget: int | None = DEFAULT_TOKEN_BUDGET,
        queue_timeout: float | None = None,
        prefill_budget: int | None = DEFAULT_PREFILL_BUDGET,
        gate: bool = True,
        single_row_threads: int | Literal["auto"] | None = "auto",
        compile_steps: bool = False,
    ) -> None:
        from langchain_pad.engine.threads import check_single_row_threads, single_row_default
        from langchain_pad.models import resolve_dtype

        concrete: Any = resolve_dtype(dtype)  # ValueError naming the accepted names
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}.")
        if batch_window < 0:
            raise ValueError(f"batch_window must be >= 0 seconds, got {batch_window!r}.")
        if not isinstance(max_waves, int) or max_waves < 1:
            raise ValueError(f"max_waves must be an integer >= 1, got {max_waves!r}.")
        if not isinstance(candidates, int) or candidates < 1:
            raise ValueError(f"candidates must be an integer >= 1, got {candidates!r}.")
        self.model = model
        """The base model: embedded name, Hugging Face id or local directory."""
        self.dtype: Dtype = concrete
        """The weights' dtype (``auto`` resolved: bfloat16 where the CPU has it natively)."""
        self.candidates = candidates
        """Top-K candidates PAD scores for guided rows that set no ``top_k``."""
        self._max_batch_size = max_batch_size
        self._batch_window = float(batch_window)
        self._max_waves = max_waves
        self._stats_window = stats_window
        if token_budget is not None and (not isinstance(token_budget, int) or token_budget < 1):
            raise ValueError(f"token_budget must be None or an integer >= 1, got {token_budget!r}.")
        self.token_budget = token_budget
        """Most prompt + new tokens decoded at once (see ``BatchScheduler.token_budget``):
        long prompts queue for room instead of growing the caches past memory."""
        if queue_timeout is not None and (
            isinstance(queue_timeout, bool)
            or not isinstance(queue_timeout, int | float)
            or not queue_timeout > 0
        ):
            raise ValueError(f"queue_timeout must be None or > 0 seconds, got {queue_timeout!r}.")
        self.queue_timeout = None if queue_timeout is None else float(queue_timeout)
        """Seconds a request may wait for its wave to start before it is refused with
        ``QueueTimeoutError`` (see ``BatchScheduler.queue_timeout``). None (the library's
        default): callers wait as long as the queue takes; a server sets one."""
        if prefill_budget is not None and (
            not isinstance(prefill_budget, int) or prefill_budget < 1
        ):
            raise ValueError(
                f"prefill_budget must be None or an integer >= 1, got {prefill_budget!r}."
            )
        self.prefill_budget = prefill_budget
        """Most prompt tokens one wave prefills at once (see
        ``BatchScheduler.prefill_budget``)."""
        if not isinstance(gate, bool):
            raise ValueError(f"gate must be True or False, got {gate!r}.")
        self.gate = gate
        """Leave unscored the PAD steps the plausibility floor has already decided (only
        the base model's first choice is plausible): the same picks, fewer adapter
        forwards; those tokens' records carry no reward. False scores every token."""
        self.single_row_threads = check_single_row_threads(
            single_row_default(concrete) if single_row_threads == "auto" else single_row_threads
        )
        """Intra-op threads the decoding thread uses for a row alone (None: torch's
        setting). ``auto``: one for float32 and int4, where it measured 1.2-1.5x faster
        through ``invoke``; see :mod:`langchain_pad.engine.threads`."""
        if not isinstance(compile_steps, bool):
            raise ValueError(f"compile_steps must be True or False, got {compile_steps!r}.")
        self.compile_steps = compile_steps
        """One-token steps through ``torch.compile`` (off: compiling takes minutes and
        changes rounding; see :mod:`langchain_pad.engine.compiled`)."""
        self._lock = threading.RLock()
        self._loaded: LoadedModel | None = None
        self._scheduler: BatchScheduler | None = None
        self._reward_models: dict[str, PersonalizedRewardModel] = {}
        self._refs: dict[str, RewardModelRef] = {}
        self._calibrations: dict[str, PoleCalibration] = {}
        self._anchor_stores: dict[str, InMemoryProfileStore] = {}
        self._compiler: GrammarCompiler | None = None
        self._router: EmbeddingToolRouter | None = None

    def __repr__(self) -> str:
        return (
            f"PADRuntime(model={self.model!r}, dtype={self.dtype!r}, "
            f"max_batch_size={self.max_batch_size}, reward_models={sorted(self._reward_models)})"
        )

    # ------------------------------------------------------------------ the shared ones

    @classmethod
    def shared(cls, model: str = DEFAULT_MODEL, dtype: Dtype = "float32") -> PADRuntime:
        """The process's runtime for this model and dtype, created on first use.

        Every ``PADChatModel`` without ``runtime=`` uses it, so LangChain's many copies
        of a chat model (``bind``, ``with_config``) share one engine and thread.
        """
        from langchain_pad.models import resolve_dtype

        dtype = resolve_dtype(dtype)  # type: ignore[assignment]  # "auto" -> this CPU's
        key = (model, dtype)
        with cls._shared_lock:
            runtime = cls._shared.get(key)
            if runtime is None:
                runtime = cls(model, dtype=dtype)
                cls._shared[key] = runtime
            return runtime

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, **settings: Any) -> PADRuntime:
        """A runtime over a model already in memory (your own, or a test's tiny one).

        Its dtype is the model's own (``loaded.dtype``): naming another would make the
        runtime report, and key its reward models by, weights it does not have."""
        dtype = settings.setdefault("dtype", loaded.dtype)
        if dtype != loaded.dtype:
            raise ValueError(
                f"from_loaded(dtype={dtype!r}) but the model was loaded as {loaded.dtype!r}; "
                "leave dtype out, or load the model in the dtype you want."
            )
        runtime = cls(loaded.name, **settings)
        runtime._loaded = loaded
        return runtime

    @classmethod
    def shared_runtimes(cls) -> list[PADRuntime]:
        """The runtimes :meth:`shared` has created in this process."""
        with cls._shared_lock:
            return list(cls._shared.values())

    # ------------------------------------------------------------------ what it owns

    @property
    def loaded(self) -> LoadedModel:
        """The base model and tokenizer, loaded on first use."""
        with self._lock:
            if self._loaded is None:
                from langchain_pad.models import load_model

                self._loaded = load_model(self.model, dtype=self.dtype)
            return self._loaded

    @property
    def scheduler(self) -> BatchScheduler:
        """The one decoding thread of this runtime (started by its first request)."""
        with self._lock:
            if self._scheduler is None:
                from langchain_pad.engine import BatchScheduler, DecodingEngine
                from langchain_pad.engine.compiled import CompiledSteps
                from langchain_pad.engine.pad import PADGuide

                loaded = self.loaded
                engine = DecodingEngine(
                    loaded.model,
                    loaded.tokenizer,
                    eos_token_ids=loaded.eos_token_ids,
                    context_length=loaded.context_length,
                    compiled_steps=CompiledSteps(loaded.model) if self.compile_steps else None,
                )
                self._scheduler = BatchScheduler(
                    engine,
                    guide=PADGuide(default_candidates=self.candidates, gate=self.gate),
                    max_batch_size=self._max_batch_size,
                    batch_window=self._batch_window,
                    max_waves=self._max_waves,
                    stats_window=self._stats_window,
                    token_budget=self.token_budget,
                    queue_timeout=self.queue_timeout,
                    prefill_budget=self.prefill_budget,
                    single_row_threads=self.single_row_threads,
                )
                _LIVE.add(self)
            return self._scheduler

    def reward_model(self, name_or_path: str | Path = "default") -> PersonalizedRewardModel:
        """The PersRM at ``name_or_path`` (``"default"``: the shipped one), loaded once."""
        from langchain_pad.models import resolve_reward_model

        directory = str(Path(resolve_reward_model(str(name_or_path))).expanduser().resolve())
        with self._lock:
            rm = self._reward_models.get(directory)
            if rm is None:
                from langchain_pad.reward_model import PersonalizedRewardModel

                rm = PersonalizedRewardModel.load(directory, self.loaded.model)
                self._reward_models[directory] = rm
            return rm

    def reward_model_ref(self, name_or_path: str | Path = "default") -> RewardModelRef:
        """Id and axes of a PersRM directory (hashes its files once; loads no weights)."""
        from langchain_pad.models import resolve_reward_model
        from langchain_pad.profiles import reward_model_ref

        directory = str(Path(resolve_reward_model(str(name_or_path))).expanduser().resolve())
        with self._lock:
            ref = self._refs.get(directory)
            if ref is None:
                ref = reward_model_ref(directory)
                self._refs[directory] = ref
            return ref

    def calibration(self, name_or_path: str | Path = "default") -> PoleCalibration:
        """What strengths in ``[-1, 1]`` mean for this PersRM (its ``calibration.json``),
        read once (a :class:`~langchain_pad.calibration.CalibrationError` says how to
        make one when the directory has none)."""
        from langchain_pad.calibration import load_calibration
        from langchain_pad.models import resolve_reward_model

        directory = str(Path(resolve_reward_model(str(name_or_path))).expanduser().resolve())
        ref = self.reward_model_ref(directory)
        with self._lock:
            table = self._calibrations.get(directory)
            if table is None:
                table = load_calibration(directory, ref.axes)
                self._calibrations[directory] = table
            return table

    def anchor_store(self, name_or_path: str | Path = "default") -> InMemoryProfileStore:
        """An in-memory store holding only this PersRM's anchor poles.

        What ``preference="..."`` is matched against when the caller configured no
        profile store: the shipped PersRM names its poles, so free text works out of
        the box. Built on first use (it loads the embedding model then).
        """
        from langchain_pad.models import resolve_reward_model

        directory = str(Path(resolve_reward_model(str(name_or_path))).expanduser().resolve())
        with self._lock:
            store = self._anchor_stores.get(directory)
            if store is None:
                from langchain_pad.profiles import InMemoryProfileStore

                store = InMemoryProfileStore(reward_model=directory)
                self._anchor_stores[directory] = store
            return store

    @property
    def grammar_compiler(self) -> GrammarCompiler:
        """Compiles a row's grammar (tool calls, structured output) for this tokenizer."""
        with self._lock:
            if self._compiler is None:
                from langchain_pad.engine.grammar import GrammarCompiler

                loaded = self.loaded
                self._compiler = GrammarCompiler(
                    loaded.tokenizer,
                    int(loaded.model.config.vocab_size),
                    eos_token_ids=loaded.eos_token_ids,
                )
            return self._compiler

    @property
    def tool_router(self) -> EmbeddingToolRouter:
        """Decides, for ``tool_choice="auto"``, whether a request calls a tool (see
        :mod:`langchain_pad.tool_router`); built on first use (it loads the embedder)."""
        with self._lock:
            if self._router is None:
                from langchain_pad.tool_router import EmbeddingToolRouter

                self._router = EmbeddingToolRouter()
            return self._router

    # ------------------------------------------------------------------ batching settings

    @property
    def max_batch_size(self) -> int:
        """Most rows decoded in one forward pass."""
        return self._max_batch_size

    @max_batch_size.setter
    def max_batch_size(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {value!r}.")
        with self._lock:
            self._max_batch_size = value
            if self._scheduler is not None:
                self._scheduler.max_batch_size = value

    @property
    def batch_window(self) -> float:
        """Seconds a wave waits, after its first request, for others to join it."""
        return self._batch_window

    @batch_window.setter
    def batch_window(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"batch_window must be >= 0 seconds, got {value!r}.")
        with self._lock:
            self._batch_window = float(value)
            if self._scheduler is not None:
                self._scheduler.batch_window = float(value)

    @property
    def max_waves(self) -> int:
        """Waves decoded at once, a step of each in turn (1: one after another)."""
        return self._max_waves

    @max_waves.setter
    def max_waves(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"max_waves must be an integer >= 1, got {value!r}.")
        with self._lock:
            self._max_waves = value
            if self._scheduler is not None:
                self._scheduler.max_waves = value

    # ------------------------------------------------------------------ decoding

    def submit(self, request: GenerationRequest, sink: EventSink) -> RequestTicket:
        """Queue one request on the decoding thread; its events go to ``sink``."""
        return self.scheduler.submit(request, sink)

    def stream(
        self, request: GenerationRequest, *, timeout: float | None = None
    ) -> Iterator[TokenEvent]:
        """Submit and iterate one request's events; closing the iterator cancels it."""
        return self.scheduler.stream(request, timeout=timeout)

    def gathering(self, count: int) -> AbstractContextManager[None]:
        """Hold the next wave until ``count`` requests arrived (``batch`` uses it)."""
        return self.scheduler.gathering(count)

    def stats(self) -> dict[str, Any]:
        """What the decoding thread did: totals, and the last waves (a bounded window)."""
        if self._scheduler is None:
            waves: list[Any] = []
            totals = {"waves": 0, "rows": 0, "forward_passes": 0}
            sizes: list[int] = []
        else:
            waves = self._scheduler.wave_stats
            sizes = self._scheduler.wave_sizes
            totals = {
                "waves": self._scheduler.totals.waves,
                "rows": self._scheduler.totals.rows,
                "forward_passes": self._scheduler.forward_passes,
            }
        return {
            "model": self.model,
            "dtype": self.dtype,
            "reward_models": sorted(self._reward_models),
            "decoding_threads": 0 if self._scheduler is None else 1,
            "max_batch_size": self._max_batch_size,
            "batch_window": self._batch_window,
            "max_waves": self._max_waves,
            "token_budget": self.token_budget,
            "queue_timeout": self.queue_timeout,
            "prefill_budget": self.prefill_budget,
            "totals": totals,
            "window": len(sizes),
            "wave_sizes": sizes,
            "forward_passes_per_wave": [s.forward_passes for s in waves],
            "largest_batches": [max(s.batch_sizes, default=0) for s in waves],
        }

    def close(self, *, cancel_running: bool = True) -> None:
        """Stop the decoding thread (cancelling open requests); the runtime can restart."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.close(cancel_running=cancel_running)


@atexit.register
def _close_live_runtimes() -> None:
    for runtime in list(_LIVE):
        runtime.close()
