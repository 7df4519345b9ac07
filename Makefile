PY ?= python3
STAMP := .cache/dev-installed

.PHONY: install test check bench demo notebooks kafka-up kafka-down clean

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

notebooks: $(STAMP)
	$(PY) scripts/execute_notebooks.py   # re-execute and save them with their outputs

kafka-up:
	bash scripts/kafka.sh up

kafka-down:
	bash scripts/kafka.sh down

clean:
	rm -rf .cache/dev-installed .pytest_cache .mypy_cache .ruff_cache out
