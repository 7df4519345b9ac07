"""Thread pools during scoring: at most N BLAS/OpenMP threads (default 1).

scikit-learn's tree models (HistGradientBoosting, IsolationForest) and BLAS start
one OpenMP/BLAS thread per core for every call. The engine scores a batch at a time
on a core of its own, so a pool of threads per call only competes with the engine
(and with other processes) for the same cores: on the 2-core development machine
`cep demo` took ~37 s wall with the default pools and ~15 s with one thread, with
identical alerts. The engine therefore enters a `ThreadLimit` around every model
call (`EngineConfig.scoring_threads`; `cep backtest --scoring-threads N`; the
service's `scoring_threads` setting / `CEP_SCORING_THREADS`; None leaves the
libraries' own defaults).

The limit only applies while scoring, in the scoring thread; the previous limits
are restored afterwards. `threadpoolctl` is imported at the first call, i.e. only
when a pattern scores, and the controller (which looks up the loaded thread-pool
libraries, ~80 ms) is built once; each call then costs ~0.1 ms (measured), once per
score call site per batch.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any


class ThreadLimit:
    """Context manager: BLAS/OpenMP thread pools limited to `threads` inside it."""

    __slots__ = ("_controller", "_limiter", "threads")

    def __init__(self, threads: int | None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"scoring threads must be at least 1, not {threads}")
        self.threads = threads
        self._controller: Any = None
        self._limiter: Any = None

    def __enter__(self) -> ThreadLimit:
        if self.threads is None:
            return self
        if self._controller is None:
            from threadpoolctl import ThreadpoolController

            # built at the first score call: the model's libraries are loaded by then
            self._controller = ThreadpoolController()
        self._limiter = self._controller.limit(limits=self.threads)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.restore_original_limits()
