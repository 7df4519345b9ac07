"""SIGTERM and SIGINT while `cep serve` starts.

uvicorn handles both once it serves. Before that, loading the models and patterns,
reading the control topic and starting the engine take a second or more (more with
many patterns), and the default action of SIGTERM would kill the process there with
exit status -15, leaving the consumer group to notice by session timeout. From the
moment the command line is parsed, a stop is remembered instead: the start-up step
in progress finishes, the service stops without serving, and the command exits 0.
Once the server exists, a stop is handed to it (the gap before uvicorn installs its
own handlers). A second SIGINT before the server runs still interrupts at once.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("cep.service")

SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any]


class StopSignal:
    """Remembers the first SIGTERM/SIGINT until `forward_to` names who stops the
    process; restores the previous handlers on leaving the `with` block."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._target: Handler | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._target is not None:
            self._target(signum, frame)
            return
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: do not wait for the start-up
        if self.received is None:
            log.info("signal %d during start-up: stopping once the current step is done",
                     signum)
        self.received = signum

    def forward_to(self, handler: Handler) -> None:
        """From now on `handler` gets the signals; one received already is handed to it
        at once."""
        self._target = handler
        if self.received is not None:
            handler(self.received, None)
