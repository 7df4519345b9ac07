"""Control the single-node dev/test Kafka broker of ``scripts/kafka.sh`` from Python.

Used by ``tests/integration/conftest.py``; importable from any test or tool::

    from kafka_broker import KafkaBroker   # with tests/ on sys.path

    broker = KafkaBroker.launch(instance="mytest")   # fetch if needed, format, start, wait
    broker.bootstrap                                  # "127.0.0.1:<port>"
    broker.restart()                                  # same data dir and port
    broker.down()                                     # stop and delete the data dir

``KafkaBroker.attach(bootstrap)`` wraps a broker somebody else runs (``CEP_KAFKA_BOOTSTRAP``);
it can be restarted only if it is an instance started by ``scripts/kafka.sh`` in this checkout.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO_ROOT / "scripts" / "kafka.sh"
RUN_ROOT = REPO_ROOT / ".cache" / "kafka" / "run"
BOOTSTRAP_ENV = "CEP_KAFKA_BOOTSTRAP"

# Cold `up` includes the Maven download (~1 min); a start on a busy 2-core box can take 30 s.
SCRIPT_TIMEOUT_S = 900


class KafkaBrokerError(RuntimeError):
    """scripts/kafka.sh failed, or the broker cannot do what was asked."""


def unique_name(prefix: str = "cep-test") -> str:
    """A topic / group / transactional id that no other test run will use."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def run_kafka_sh(
    command: str,
    *,
    instance: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = SCRIPT_TIMEOUT_S,
) -> str:
    """Run ``scripts/kafka.sh <command>`` and return its stdout; raise with its stderr on error."""
    full_env = dict(os.environ)
    # A developer's CEP_KAFKA_PORT (meant for their dev broker) must not leak into test brokers.
    for var in ("CEP_KAFKA_PORT", "CEP_KAFKA_CONTROLLER_PORT", "CEP_KAFKA_OWNER_PID"):
        full_env.pop(var, None)
    if instance is not None:
        full_env["CEP_KAFKA_INSTANCE"] = instance
    full_env.update(env or {})
    proc = subprocess.run(
        ["bash", str(KAFKA_SH), command],
        env=full_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise KafkaBrokerError(
            f"scripts/kafka.sh {command} (instance {instance or 'dev'}) failed with exit code "
            f"{proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def _bootstrap_from_output(stdout: str) -> str:
    for line in reversed(stdout.splitlines()):
        if line.startswith(f"{BOOTSTRAP_ENV}="):
            return line.split("=", 1)[1].strip()
    raise KafkaBrokerError(f"no {BOOTSTRAP_ENV}=... line in scripts/kafka.sh output: {stdout!r}")


def find_instance(bootstrap: str) -> str | None:
    """Name of the scripts/kafka.sh instance in this checkout that serves ``bootstrap``."""
    if not RUN_ROOT.is_dir():
        return None
    for run_dir in sorted(RUN_ROOT.iterdir()):
        f = run_dir / "bootstrap"
        if f.is_file() and f.read_text().strip() == bootstrap.strip():
            return run_dir.name
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_instances(prefix: str = "pytest-") -> list[str]:
    """``down`` instances named ``<prefix><pid>`` whose owner process no longer exists.

    A test session killed with SIGKILL cannot run its teardown; its broker is stopped by the
    watchdog, but the data dir stays behind until this cleans it up.
    """
    removed: list[str] = []
    if not RUN_ROOT.is_dir():
        return removed
    for run_dir in sorted(RUN_ROOT.iterdir()):
        suffix = run_dir.name.removeprefix(prefix)
        if run_dir.name == suffix or not suffix.isdigit() or _pid_alive(int(suffix)):
            continue
        try:
            run_kafka_sh("down", instance=run_dir.name, timeout=120)
            removed.append(run_dir.name)
        except KafkaBrokerError:
            pass
    return removed


class KafkaBroker:
    """A Kafka broker reachable at ``bootstrap``.

    ``instance`` is the scripts/kafka.sh instance name when this checkout manages the broker
    (then stop/start/restart work); ``owned`` means this object started it and ``down()``
    should remove it.
    """

    def __init__(self, bootstrap: str, *, instance: str | None = None, owned: bool = False):
        self.bootstrap = bootstrap
        self.instance = instance
        self.owned = owned

    def __repr__(self) -> str:
        return f"KafkaBroker({self.bootstrap!r}, instance={self.instance!r}, owned={self.owned})"

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def launch(
        cls,
        instance: str | None = None,
        *,
        port: int | None = None,
        owner_pid: int | None = None,
        env: dict[str, str] | None = None,
    ) -> KafkaBroker:
        """``scripts/kafka.sh up`` a fresh broker (free port unless ``port``) and wait for it.

        ``owner_pid``: the broker is killed by a watchdog when that process dies, so a crashed
        or SIGKILLed test run does not leave a JVM behind.
        """
        instance = instance or unique_name("py")
        extra = dict(env or {})
        if port is not None:
            extra["CEP_KAFKA_PORT"] = str(port)
        if owner_pid is not None:
            extra["CEP_KAFKA_OWNER_PID"] = str(owner_pid)
        out = run_kafka_sh("up", instance=instance, env=extra)
        return cls(_bootstrap_from_output(out), instance=instance, owned=True)

    @classmethod
    def attach(cls, bootstrap: str) -> KafkaBroker:
        """Wrap a broker that is already running (not owned: ``down()`` leaves it alone)."""
        return cls(bootstrap, instance=find_instance(bootstrap), owned=False)

    # -- control --------------------------------------------------------------------------

    @property
    def can_restart(self) -> bool:
        return self.instance is not None

    @property
    def log_path(self) -> Path | None:
        if self.instance is None:
            return None
        return RUN_ROOT / self.instance / "logs" / "server.log"

    def _require_instance(self) -> str:
        if self.instance is None:
            raise KafkaBrokerError(
                f"broker {self.bootstrap} is not managed by scripts/kafka.sh in this checkout; "
                "cannot stop/start it"
            )
        return self.instance

    def is_running(self) -> bool:
        instance = self._require_instance()
        try:
            run_kafka_sh("env", instance=instance, timeout=60)
        except KafkaBrokerError:
            return False
        return True

    def stop(self) -> None:
        """Stop the broker process; data dir and ports are kept for ``start()``."""
        run_kafka_sh("stop", instance=self._require_instance())

    def start(self) -> None:
        """Start a stopped broker on the same data dir and port; returns when it is ready."""
        out = run_kafka_sh("start", instance=self._require_instance(), env=self._owner_env())
        self._check_same_bootstrap(out)

    def restart(self) -> float:
        """Stop and start the broker keeping its data; returns the seconds it was unavailable."""
        t0 = time.monotonic()
        out = run_kafka_sh("restart", instance=self._require_instance(), env=self._owner_env())
        self._check_same_bootstrap(out)
        return time.monotonic() - t0

    def down(self) -> None:
        """Stop the broker and delete its data dir."""
        run_kafka_sh("down", instance=self._require_instance())

    def _owner_env(self) -> dict[str, str]:
        # Keep the crash watchdog for brokers this process owns, also across restarts.
        return {"CEP_KAFKA_OWNER_PID": str(os.getpid())} if self.owned else {}

    def _check_same_bootstrap(self, stdout: str) -> None:
        got = _bootstrap_from_output(stdout)
        if got != self.bootstrap:
            raise KafkaBrokerError(f"broker came back on {got}, expected {self.bootstrap}")


# -- small client helpers shared by integration tests -------------------------------------


def wait_for_topic(admin: Any, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """Wait until metadata shows ``topic`` with ``partitions`` partitions, all with a leader."""
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(topic=topic, timeout=5)
        t = md.topics.get(topic)
        if (
            t is not None
            and t.error is None
            and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} not ready after {timeout}s: {t and t.error}")
        time.sleep(0.1)


def consume_values(consumer: Any, count: int, timeout: float = 30.0) -> list[bytes | None]:
    """Poll until ``count`` message values arrived (partition-EOF events are skipped)."""
    from confluent_kafka import KafkaError, KafkaException

    deadline = time.monotonic() + timeout
    values: list[bytes | None] = []
    while len(values) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(values)} of {count} messages in {timeout}s: {values!r}")
        msg = consumer.poll(min(1.0, remaining))
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(err)
        values.append(msg.value())
    return values
