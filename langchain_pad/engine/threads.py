"""How many intra-op threads the decoding thread runs a wave of one row on.

Why this exists: the decoding thread is a second OpenMP master. The thread that loaded
the model (and any other that ran torch) already owns a team of workers, and torch's CPU
wheels use GNU OpenMP, which stops spin-waiting between parallel regions once it manages
more threads than there are CPUs: its workers sleep, and each of the several hundred
small parallel regions of a batch-1 token pays a wake-up. On a 2-core AMD EPYC, plain
int4 decoding ran at 34-39 tokens/s on the main thread and 19-26 on a second thread;
on that second thread with one intra-op thread, 27-34. Through ``invoke``, one run, two
runtimes side by side: int4 21 -> 32 tokens/s, float32 14 -> 16.5. A batch of rows
keeps its threads: there each region is large enough to pay for them.

Only for the dtypes where it was measured to pay (:data:`SINGLE_ROW_THREADS`): with
bfloat16 and int8 weights, whose kernels are compute-bound on this CPU, the llama.cpp
comparison read 10.5 and 12.5 tokens/s with one thread against 15.4 and 19.0 with two
(a side-by-side probe said the opposite), so they keep torch's setting.
``benchmarks/README.md`` names the measurements.

The limit is set with threadpoolctl on the decoding thread only: OpenMP's thread count
is per calling thread, so callers' threads and torch's process-wide setting keep theirs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SINGLE_ROW_THREADS", "WaveThreads", "check_single_row_threads", "single_row_default"]

SINGLE_ROW_THREADS: dict[str, int] = {"float32": 1, "int4": 1}
"""Per weight dtype, the intra-op threads of a row alone where one thread measured faster."""


def single_row_default(dtype: str) -> int | None:
    """The ``single_row_threads`` a runtime of this dtype uses unless told otherwise."""
    return SINGLE_ROW_THREADS.get(dtype)


def check_single_row_threads(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(
            "single_row_threads must be None (keep torch's thread count), an integer >= 1 "
            f"or, on a PADRuntime, 'auto' (per dtype); got {value!r}."
        )
    return value


class WaveThreads:
    """The decoding thread's intra-op thread limit, switched by how many rows it decodes.

    Only ever called from the decoding thread: the limit belongs to the calling thread.
    """

    def __init__(self, single_row: int | None) -> None:
        self.single_row = check_single_row_threads(single_row)
        """Intra-op threads for one row alone; None: torch's setting for every wave."""
        self._controller: Any = None
        self._limiter: Any = None

    @property
    def limited(self) -> bool:
        return self._limiter is not None

    def set_rows(self, rows: int) -> None:
        """Limit the threads for a step of one row, lift the limit for more (or none)."""
        want = self.single_row is not None and rows == 1
        if want == self.limited:
            return
        if want:
            if self._controller is None:
                import torch
                from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

                # torch sets each thread's OpenMP count on its first parallel call; make
                # that happen now, or it would undo the limit below
                torch.get_num_threads()
                self._controller = ThreadpoolController()
            self._limiter = self._controller.limit(limits=self.single_row, user_api="openmp")
        else:
            self._limiter.restore_original_limits()
            self._limiter = None
