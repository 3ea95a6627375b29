# Two commands on a fresh machine: `make run` (calibrate the built-in simulated chip) and
# `make test`. Both create the virtual environment and install fluxcal when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench

# uv installs the ~190 pinned packages in ~25 s where pip takes ~95 s (measured on two
# cores); pip does it alone when uv cannot be had or fails (its own index settings, TLS).
# Compiling the bytecode, as pip does by default, adds ~30 s: without it, where the
# environment sets PYTHONDONTWRITEBYTECODE (this machine does), every process of the tests
# compiled the ~2,000 modules it imports again (~4 s for fluxcal's runner, ~5 s for prefect).
UV_VERSION := 0.9.9

$(BIN)/fluxcal: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	( $(BIN)/pip install --quiet uv==$(UV_VERSION) \
	  && $(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e ".[dev]" ) \
	|| $(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/fluxcal

install: $(BIN)/fluxcal

run: install
	$(BIN)/fluxcal calibrate --store fluxcal-store --plots fluxcal-store/plots

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadfile --no-loadscope-reorder

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script; done
