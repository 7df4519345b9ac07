"""`cep serve`: the engine and the REST API in one process, served by uvicorn.

Start-up order: settings (cep.toml, then CEP_... environment, then --host/--port) ->
models and patterns loaded and compiled, the engine loop started (errors are printed
with their diagnostics and the command exits 1 before anything binds) -> uvicorn on
127.0.0.1:8080 unless told otherwise.

SIGTERM / SIGINT: uvicorn stops accepting connections and lets running requests
finish (a `POST /events` batch being processed completes and gets its answer); open
alert streams are ended at once (clients reconnect elsewhere with Last-Event-ID);
then the engine loop finishes the batches already queued and stops, and the Kafka
runner finishes its batch and checkpoints. The command then exits 0 (1 if the Kafka
runner died, 2 for a configuration error). A stop before uvicorn serves
(service/stop_signal.py) lets the start-up step in progress finish, stops the engine
without serving and exits 0 too.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import uvicorn

from cep.errors import CepError, PatternError
from service import logs
from service.api.app import create_app
from service.config import Settings, load_settings
from service.service_state import ServiceState
from service.stop_signal import StopSignal

log = logging.getLogger("cep.service")

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _Server(uvicorn.Server):
    """uvicorn's server, ending alert streams on the exit signal and exiting when the
    Kafka runner died."""

    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.state = state
        self.exit_code = 0

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Like uvicorn's, but the signal is not raised again after the graceful stop:
        `cep serve` exits 0 when it stopped cleanly (a second SIGINT forces the exit)."""
        self.state.hub.close()  # SSE streams end now, so the graceful shutdown is quick
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        st = self.state
        if not st.settings.embedded and st.kafka_failed:
            log.error("the Kafka runner stopped: %s", st.not_ready_reason())
            self.exit_code = 1
            return True
        return await super().on_tick(counter)


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    update: dict[str, Any] = {}
    if getattr(args, "host", None):
        update["host"] = args.host
    if getattr(args, "port", None) is not None:
        update["port"] = args.port
    if update:
        settings.api = settings.api.model_copy(update=update)
    resident = getattr(args, "max_resident_keys", None)
    if resident is not None:
        settings.max_resident_keys = resident
    return settings


def serve(args: argparse.Namespace, stop: StopSignal | None = None) -> int:
    """Run the service until a stop signal. `stop`: the start-up's signal handler
    (`cep serve` installs it before importing this module); without one, a signal
    before uvicorn serves has its default effect."""
    stop = stop or StopSignal()
    level = getattr(args, "log_level", None) or "info"
    logs.configure(level, getattr(args, "log_format", None) or "text")
    try:
        settings = settings_from_args(args)
    except CepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    api = settings.api
    if api.host not in LOOPBACK and not api.token:
        log.warning("listening on %s without an API token: anyone who can reach the port "
                    "can change patterns and models (set api.token or CEP_API_TOKEN)",
                    api.host)
    if stop.received is not None:
        return 0
    state = ServiceState(settings)
    try:
        state.start()
    except PatternError as err:
        print(err.format(), file=sys.stderr)
        print("the service did not start: fix the patterns above", file=sys.stderr)
        state.stop()
        return 1
    except CepError as err:
        print(f"error: {err}", file=sys.stderr)
        state.stop()
        return 1
    if stop.received is not None:
        state.stop()
        log.info("stopped during start-up, before serving")
        return 0
    app = create_app(settings, state=state)
    config = uvicorn.Config(
        app, host=api.host, port=api.port, log_level=level, lifespan="on",
        timeout_graceful_shutdown=10, server_header=False, log_config=None,
    )
    server = _Server(config, state)
    stop.forward_to(server.handle_exit)  # until uvicorn's own handlers are in place
    log.info("cep %s mode on http://%s:%d (docs at /docs)", state.mode, api.host, api.port)
    server.run()
    if not server.started:
        return 1
    return server.exit_code
