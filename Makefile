PY ?= python3
STAMP := .cache/dev-installed

.PHONY: install test check bench demo notebooks kafka-up kafka-down clean flink-diff

$(STAMP): pyproject.toml
	$(PY) -m pip install -q -e '.[dev]'
	@mkdir -p .cache && touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

check: $(STAMP)
	$(PY) -m ruff check cep service tests benchmarks models
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/state.py
	$(PY) benchmarks/scoring.py

demo: $(STAMP)
	cep demo

# Differential test against the real FlinkCEP 1.20.1 (JDK 17 + Maven; not in `make test`):
# builds the oracle, re-records the corpus that `make test` replays (seed 10), then runs
# a fresh seed, minimizing what differs. The last line counts agreeing cases.
FLINK_SEED ?= 11
FLINK_COUNT ?= 2000
flink-diff: $(STAMP)
	bash scripts/flink-oracle.sh
	PYTHONPATH=$(CURDIR) $(PY) tests/flink/diff.py --seed 10 --count 2500 --record tests/flink/corpus.jsonl
	PYTHONPATH=$(CURDIR) $(PY) tests/flink/diff.py --seed $(FLINK_SEED) --count $(FLINK_COUNT) --minimize --show 3

notebooks: $(STAMP)
	$(PY) scripts/execute_notebooks.py   # re-execute and save them with their outputs

kafka-up:
	bash scripts/kafka.sh up

kafka-down:
	bash scripts/kafka.sh down

clean:
	rm -rf .cache/dev-installed .pytest_cache .mypy_cache .ruff_cache out
