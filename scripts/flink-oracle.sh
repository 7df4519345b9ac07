#!/usr/bin/env bash
# Build the FlinkCEP oracle of the differential test (docs/flink-diff.md).
#
# Fetches FlinkCEP 1.20.1 and what its CepOperator needs from Maven Central into
# .cache/flink/lib (tests/flink/oracle/pom.xml; nothing fetched is committed) and
# compiles tests/flink/oracle/FlinkOracle.java with the installed JDK (17, the one the
# Kafka broker of the integration tests needs) into .cache/flink/classes.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/flink
command -v javac >/dev/null || { echo "flink-oracle: javac not found (a JDK 17 is needed)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "flink-oracle: mvn not found (apt-get install maven)" >&2; exit 1; }
mkdir -p "$CACHE/lib" "$CACHE/classes"
if [ ! -f "$CACHE/lib/.fetched" ] || [ tests/flink/oracle/pom.xml -nt "$CACHE/lib/.fetched" ]; then
  mvn -q -B -f tests/flink/oracle/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$PWD/$CACHE/lib" -DincludeScope=runtime \
    -DexcludeArtifactIds=log4j-slf4j-impl
  touch "$CACHE/lib/.fetched"
fi
javac -nowarn -d "$CACHE/classes" -cp "$CACHE/lib/*" tests/flink/oracle/FlinkOracle.java 2>&1 \
  | { grep -v '^Note:' || true; }
echo "flink-oracle: built ($(ls "$CACHE/lib" | wc -l) jars)" >&2
