# Two entry points: `make demo` (profile the paper's family) and `make test`.
# Each creates .venv and installs the project on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench bench-all report gpu-bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,postgres]'   # postgres: the driver for tests/test_search_storage.py
	$(BIN)/pip install -q --no-deps 'cityscapesscripts>=2.2'   # labels.py only: see pyproject.toml
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/escale profile --family eseg

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu"

report: $(STAMP)
	$(BIN)/escale report --out reports/eseg-family

lint: $(STAMP)
	$(BIN)/ruff check escale tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_profile.py

bench-all: bench
	$(BIN)/python benchmarks/bench_latency.py
	$(BIN)/python benchmarks/bench_context.py
	$(BIN)/python benchmarks/bench_predictor.py

# On a GPU machine, with the Python that has torch (no venv, no network: see README "GPU benchmark").
# Writes reports/gpu/<gpu>-<date>.json and .md; ends within 8 minutes.
GPU_BENCH_OUT ?= reports/gpu
gpu-bench:
	$(PY) -m escale benchmark --out $(GPU_BENCH_OUT)

clean:
	rm -rf $(VENV)
