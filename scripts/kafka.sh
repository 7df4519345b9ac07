#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller) for development and tests.
# No Docker: the official org.apache.kafka:kafka_2.13 jars come from Maven Central.
#
#   scripts/kafka.sh fetch     download Kafka + log4j2 binding into .cache/kafka/ (idempotent)
#   scripts/kafka.sh up        fetch, format a fresh data dir, start, wait until ready
#   scripts/kafka.sh down      stop (TERM, then KILL) and delete the instance's data dir
#   scripts/kafka.sh stop      stop but keep data dir and ports   (for restart tests)
#   scripts/kafka.sh start     start a stopped instance again on the same data dir/ports
#   scripts/kafka.sh restart   stop + start, keeping data
#   scripts/kafka.sh status    report (exit 0 = running, 1 = not running)
#   scripts/kafka.sh env       print CEP_KAFKA_BOOTSTRAP=host:port of the running broker
#   scripts/kafka.sh logs      print the path of the broker log file
#
# Environment (all optional):
#   CEP_KAFKA_PORT             broker port for `up` (default: a free port)
#   CEP_KAFKA_CONTROLLER_PORT  controller port for `up` (default: a free port)
#   CEP_KAFKA_INSTANCE         instance name, i.e. run dir .cache/kafka/run/<name> (default: dev)
#   CEP_KAFKA_VERSION          Kafka version (default below; must be 4.x)
#   CEP_KAFKA_LOG4J_VERSION    log4j2 version (default: 2.25.4, what Kafka 4.3.1 depends on)
#   CEP_KAFKA_AUTO_CREATE      auto.create.topics.enable (default: false)
#   CEP_KAFKA_HEAP             JVM heap options (default: -Xms128m -Xmx512m)
#   CEP_KAFKA_JVM_OPTS         extra JVM options
#   CEP_KAFKA_CDS              0 disables the class-data-sharing archives (faster JVM start)
#   CEP_KAFKA_START_TIMEOUT    seconds to wait for readiness (default: 90)
#   CEP_KAFKA_STOP_TIMEOUT     seconds between TERM and KILL (default: 30)
#   CEP_KAFKA_OWNER_PID        if set, the broker is killed when this process dies (used by pytest)
#   CEP_PYTHON                 python with confluent-kafka for the readiness check (default: python3)
#
# Progress goes to stderr; `up`, `start`, `restart` and `env` print only
# CEP_KAFKA_BOOTSTRAP=host:port on stdout. Details: docs/kafka-dev.md
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Newest 4.x whose full dependency tree is on Maven Central. (4.4.0 is listed in
# kafka_2.13's maven-metadata.xml but its dependency kafka-tools-api:4.4.0 is missing.)
KAFKA_VERSION="${CEP_KAFKA_VERSION:-4.3.1}"
SCALA_BINARY="2.13"
# log4j2 version that kafka-server:4.3.1 itself depends on (runtime log4j-api/log4j-core).
LOG4J_VERSION="${CEP_KAFKA_LOG4J_VERSION:-2.25.4}"
DEPENDENCY_PLUGIN_VERSION="3.8.1"

CACHE="$ROOT/.cache/kafka"
M2_REPO="$CACHE/m2"
LIBS="$CACHE/libs/kafka_${SCALA_BINARY}-${KAFKA_VERSION}"
INSTANCE="${CEP_KAFKA_INSTANCE:-dev}"
RUN_ROOT="$CACHE/run"
RUN="$RUN_ROOT/$INSTANCE"
PYTHON="${CEP_PYTHON:-python3}"
START_TIMEOUT="${CEP_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${CEP_KAFKA_STOP_TIMEOUT:-30}"

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$INSTANCE" in
  "" | *[!A-Za-z0-9._-]* | .*) die "CEP_KAFKA_INSTANCE must match [A-Za-z0-9._-]+ and not start with '.'" ;;
esac

# ---------------------------------------------------------------------------- fetch

fetch_stamp() {
  printf 'org.apache.kafka:kafka_%s:%s\norg.apache.logging.log4j:log4j-slf4j-impl:%s\n' \
    "$SCALA_BINARY" "$KAFKA_VERSION" "$LOG4J_VERSION"
}

fetched() {
  [[ -f "$LIBS/.complete" ]] && [[ "$(cat "$LIBS/.complete")" == "$(fetch_stamp)" ]]
}

write_pom() {
  # Throwaway pom whose only purpose is dependency:copy-dependencies.
  # Logging: Kafka 4.x logs through SLF4J 1.7 (slf4j-api 1.7.36 is in its pom) and
  # depends on log4j-api/log4j-core at runtime; the SLF4J 1.x -> log4j2 binding is
  # log4j-slf4j-impl (log4j-slf4j2-impl would be for SLF4J 2.x). Same as Kafka's tarball.
  cat >"$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cep.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_${SCALA_BINARY}</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-api</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>${DEPENDENCY_PLUGIN_VERSION}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
EOF
}

cmd_fetch() {
  if fetched; then
    log "Kafka $KAFKA_VERSION already fetched: $LIBS"
    return 0
  fi
  case "$KAFKA_VERSION" in
    4.*) ;;
    *) die "only Kafka 4.x is supported (log4j2 binding, KRaft-only config); got $KAFKA_VERSION" ;;
  esac
  command -v mvn >/dev/null || die "mvn not found (Maven 3.8+ is required for fetch)"
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.fetch.lock"
  flock 8
  if fetched; then  # another process finished while we waited for the lock
    flock -u 8
    return 0
  fi
  local pom="$CACHE/pom-${KAFKA_VERSION}.xml" tmp="$LIBS.tmp.$$" mvnlog="$CACHE/fetch.log"
  write_pom "$pom"
  rm -rf "$tmp"
  log "fetching org.apache.kafka:kafka_${SCALA_BINARY}:${KAFKA_VERSION} + log4j ${LOG4J_VERSION}" \
      "with Maven (local repo $M2_REPO; log $mvnlog)"
  if ! mvn -B -ntp -f "$pom" -Dmaven.repo.local="$M2_REPO" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
      >"$mvnlog" 2>&1; then
    tail -n 30 "$mvnlog" >&2
    rm -rf "$tmp"
    die "Maven fetch failed (full log: $mvnlog)"
  fi
  ls "$tmp"/kafka_"${SCALA_BINARY}"-*.jar >/dev/null 2>&1 || die "no kafka jar in $tmp"
  rm -rf "$LIBS"
  mkdir -p "$(dirname "$LIBS")"
  mv "$tmp" "$LIBS"
  fetch_stamp >"$LIBS/.complete"
  flock -u 8
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars into $LIBS"
}

# ---------------------------------------------------------------------------- helpers

pid_file() { echo "$RUN/kafka.pid"; }

# The pid from the pid file of run dir $1 (default: this instance) if that process is alive
# and really is that broker (guards against a recycled pid).
broker_pid() {
  local run="${1:-$RUN}" pid
  [[ -f "$run/kafka.pid" ]] || return 1
  pid="$(cat "$run/kafka.pid" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$run/server.properties" || return 1
  echo "$pid"
}

bootstrap() { cat "$RUN/bootstrap" 2>/dev/null; }

free_port() {
  "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

port_in_use() {
  "$PYTHON" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}

# Kafka Uuid string: url-safe base64 of 16 random bytes without padding, not starting with '-'.
random_cluster_id() {
  "$PYTHON" -c 'import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break'
}

# Class-data-sharing (AppCDS) archives, one per program (format / broker): the first run of
# each dumps the classes it loaded at exit, later runs map them and start ~2x faster on a
# busy 2-core machine. Keyed by Kafka version and JVM binary; a stale or broken archive only
# makes the JVM print a warning and start without it. CEP_KAFKA_CDS=0 disables this.
cds_dir() {
  local java_bin
  java_bin="$(readlink -f "$(command -v java)")"
  echo "$CACHE/cds/kafka_${SCALA_BINARY}-${KAFKA_VERSION}/$(
    printf '%s %s' "$java_bin" "$(stat -c %Y "$java_bin")" | md5sum | cut -c1-12)"
}

# JVM options for archive "$1": use it if present, else dump one to $RUN/$1.jsa.tmp at exit.
cds_opts() {
  CDS_OPTS=()
  [[ "${CEP_KAFKA_CDS:-1}" == "0" ]] && return 0
  local archive
  archive="$(cds_dir)/$1.jsa"
  if [[ -s "$archive" ]]; then
    CDS_OPTS=(-XX:SharedArchiveFile="$archive")
  else
    CDS_OPTS=(-XX:ArchiveClassesAtExit="$RUN/$1.jsa.tmp")
  fi
}

# Move archives dumped by exited JVMs of this instance into the shared cache.
promote_cds() {
  local tmp name
  for tmp in "$RUN"/*.jsa.tmp; do
    [[ -s "$tmp" ]] || continue
    name="$(basename "$tmp" .tmp)"
    mkdir -p "$(cds_dir)"
    mv -f "$tmp" "$(cds_dir)/$name"
  done
  rm -f "$RUN"/*.jsa.tmp
}

java_cmd() {
  command -v java >/dev/null || die "java not found (Java 17+ is required)"
  # shellcheck disable=SC2206
  local heap=(${CEP_KAFKA_HEAP:--Xms128m -Xmx512m}) extra=(${CEP_KAFKA_JVM_OPTS:-})
  cds_opts "$1"
  JAVA_ARGS=(java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
    "${CDS_OPTS[@]}" -Djava.awt.headless=true -Dkafka.logs.dir="$RUN/logs"
    -Dlog4j2.configurationFile="$RUN/log4j2.properties"
    "${extra[@]}" -cp "$LIBS/*")
}

write_config() {
  local port="$1" cport="$2" auto_create="${CEP_KAFKA_AUTO_CREATE:-false}"
  cat >"$RUN/server.properties" <<EOF
# Generated by scripts/kafka.sh -- single-node KRaft dev/test broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${cport}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=${RUN}/data

# Single node: replication factor 1 everywhere, tiny internal topics so startup is fast.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Topics must be created explicitly (tests and the service do it); catches typos.
auto.create.topics.enable=${auto_create}
delete.topic.enable=true

# 2-core machine: few threads.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.retention.hours=24
EOF
  cat >"$RUN/log4j2.properties" <<'EOF'
# Generated by scripts/kafka.sh: everything goes to ${kafka.logs.dir}/server.log.
status = warn
name = cep-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.requestchannel.name = kafka.network.RequestChannel$
logger.requestchannel.level = WARN
EOF
  echo "127.0.0.1:${port}" >"$RUN/bootstrap"
}

format_storage() {
  local cid
  cid="$(random_cluster_id)"
  java_cmd format
  # C1-only JIT: the formatter is short-lived, this saves ~0.5 s of CPU on small machines.
  if ! "${JAVA_ARGS[@]}" -XX:TieredStopAtLevel=1 kafka.tools.StorageTool format --cluster-id "$cid" \
      --config "$RUN/server.properties" >"$RUN/logs/format.log" 2>&1; then
    cat "$RUN/logs/format.log" >&2
    die "formatting storage failed"
  fi
  promote_cds
}

launch() {
  java_cmd broker
  : >>"$RUN/logs/stdout.log"
  # setsid: own session, so the broker survives the calling shell / terminal.
  # The inner shell writes its own pid and execs java, so the pid file is java's pid.
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$(pid_file)" \
    "${JAVA_ARGS[@]}" kafka.Kafka "$RUN/server.properties" \
    >>"$RUN/logs/stdout.log" 2>&1 </dev/null 8>&- 9>&- &
  local i
  for i in $(seq 50); do
    [[ -s "$(pid_file)" ]] && break
    sleep 0.1
  done
  [[ -s "$(pid_file)" ]] || die "broker did not start (see $RUN/logs/stdout.log)"
  if [[ -n "${CEP_KAFKA_OWNER_PID:-}" ]]; then
    start_watchdog "$(cat "$(pid_file)")" "$CEP_KAFKA_OWNER_PID"
  fi
}

# Kill the broker if the owner process (e.g. pytest) dies without running `down`.
start_watchdog() {
  local bpid="$1" owner="$2"
  setsid nohup bash -c '
    bpid=$1 owner=$2
    while kill -0 "$bpid" 2>/dev/null; do
      if ! kill -0 "$owner" 2>/dev/null; then
        kill -TERM "$bpid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$bpid" 2>/dev/null || exit 0; sleep 0.2; done
        kill -KILL "$bpid" 2>/dev/null
        exit 0
      fi
      sleep 2
    done' kafka-watchdog "$bpid" "$owner" >/dev/null 2>&1 </dev/null 8>&- 9>&- &
}

wait_ready() {
  local pid
  pid="$(cat "$(pid_file)")"
  if ! "$PYTHON" - "$(bootstrap)" "$START_TIMEOUT" "$pid" <<'EOF'
import os, socket, sys, time

bootstrap, timeout, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
host, port = bootstrap.rsplit(":", 1)
deadline = time.monotonic() + timeout

def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

# 1. wait for the listener (cheap, and keeps librdkafka from logging connection errors)
while True:
    if not alive():
        sys.exit("broker process exited during startup")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"timeout: nothing listening on {bootstrap}")
        time.sleep(0.2)

# 2. wait until the broker answers metadata requests and lists itself
from confluent_kafka.admin import AdminClient

admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
while True:
    if not alive():
        sys.exit("broker process exited during startup")
    try:
        md = admin.list_topics(timeout=2)
        if md.brokers:
            sys.exit(0)
    except Exception:  # KafkaException while the broker is still starting
        pass
    if time.monotonic() > deadline:
        sys.exit(f"timeout: broker at {bootstrap} not ready")
    time.sleep(0.2)
EOF
  then
    log "broker not ready; last lines of $RUN/logs/server.log:"
    tail -n 40 "$RUN/logs/server.log" >&2 2>/dev/null || true
    tail -n 20 "$RUN/logs/stdout.log" >&2 2>/dev/null || true
    stop_broker || true
    die "startup failed"
  fi
}

stop_broker() {
  local pid i
  pid="$(broker_pid)" || { rm -f "$(pid_file)"; promote_cds; return 0; }
  log "stopping broker pid $pid (TERM, KILL after ${STOP_TIMEOUT}s)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker did not stop in ${STOP_TIMEOUT}s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$RUN"/*.jsa.tmp  # possibly half-written
  fi
  rm -f "$(pid_file)"
  promote_cds
}

lock_instance() {
  mkdir -p "$RUN_ROOT"
  exec 9>"$RUN_ROOT/.$INSTANCE.lock"
  flock 9
}

print_env() { echo "CEP_KAFKA_BOOTSTRAP=$(bootstrap)"; }

# ---------------------------------------------------------------------------- commands

cmd_up() {
  cmd_fetch
  lock_instance
  if broker_pid >/dev/null; then
    log "already running (instance $INSTANCE, pid $(broker_pid)) on $(bootstrap)"
    print_env
    return 0
  fi
  local port cport t0
  t0=$(date +%s%N)
  if [[ -n "${CEP_KAFKA_PORT:-}" ]]; then
    port="$CEP_KAFKA_PORT"
    if port_in_use "$port"; then die "CEP_KAFKA_PORT=$port is already in use"; fi
  else
    port="$(free_port)"
  fi
  cport="${CEP_KAFKA_CONTROLLER_PORT:-$(free_port)}"
  while [[ "$cport" == "$port" ]]; do cport="$(free_port)"; done
  [[ -d "$RUN" ]] && promote_cds
  rm -rf "$RUN"
  mkdir -p "$RUN/data" "$RUN/logs"
  write_config "$port" "$cport"
  log "formatting $RUN/data"
  format_storage
  log "starting Kafka $KAFKA_VERSION (instance $INSTANCE) on 127.0.0.1:$port, controller :$cport"
  launch
  wait_ready
  log "ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms;" \
      "pid $(broker_pid), log $RUN/logs/server.log"
  print_env
}

cmd_start() {
  cmd_fetch
  lock_instance
  [[ -f "$RUN/server.properties" && -d "$RUN/data" ]] \
    || die "instance $INSTANCE has no data dir; use 'up'"
  if broker_pid >/dev/null; then
    log "already running on $(bootstrap)"
  else
    log "starting Kafka $KAFKA_VERSION (instance $INSTANCE) on $(bootstrap) with existing data"
    launch
    wait_ready
    log "ready; pid $(broker_pid)"
  fi
  print_env
}

cmd_stop() {
  lock_instance
  stop_broker
}

cmd_restart() {
  cmd_stop
  flock -u 9
  cmd_start
}

cmd_down() {
  lock_instance
  stop_broker
  if [[ -d "$RUN" ]]; then
    rm -rf "$RUN"
    log "removed $RUN"
  fi
  rm -f "$RUN_ROOT/.$INSTANCE.lock"
}

cmd_status() {
  local pid rc=1
  if pid="$(broker_pid)"; then
    echo "instance $INSTANCE: running, pid $pid, bootstrap $(bootstrap), Kafka $KAFKA_VERSION"
    echo "  log: $RUN/logs/server.log"
    rc=0
  elif [[ -d "$RUN/data" ]]; then
    echo "instance $INSTANCE: stopped (data kept in $RUN/data; 'start' or 'down')"
  else
    echo "instance $INSTANCE: not running"
  fi
  if fetched; then echo "jars: $LIBS"; else echo "jars: not fetched (run: $0 fetch)"; fi
  local d other
  for d in "$RUN_ROOT"/*/; do
    [[ -d "$d" ]] || continue
    other="$(basename "$d")"
    [[ "$other" == "$INSTANCE" ]] && continue
    echo "other instance: $other ($(broker_pid "${d%/}" >/dev/null && echo running \
      || echo stopped), $(cat "$d/bootstrap" 2>/dev/null || echo '?'))"
  done
  return "$rc"
}

cmd_env() {
  broker_pid >/dev/null || die "broker instance $INSTANCE is not running (start it: $0 up)"
  print_env
}

cmd_logs() { echo "$RUN/logs/server.log"; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  up) cmd_up ;;
  down) cmd_down ;;
  stop) cmd_stop ;;
  start) cmd_start ;;
  restart) cmd_restart ;;
  status) cmd_status ;;
  env) cmd_env ;;
  logs) cmd_logs ;;
  *) usage ;;
esac
