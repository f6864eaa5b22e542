# Two entry points: `make demo` (profile the paper's family) and `make test`.
# Each creates .venv and installs the project on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/escale profile --family eseg

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check escale tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_profile.py

clean:
	rm -rf $(VENV)
