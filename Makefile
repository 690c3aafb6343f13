# memberbot: `make run` starts the service on the embedded SQLite default; `make test` runs
# the whole suite. Both create .venv and install what they need on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test fuzz faults lint bench chat clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	$(BIN)/memberbot serve

chat: $(STAMP)
	$(BIN)/memberbot chat

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not fuzz and not faults"

# schemathesis on the signed API and hypothesis on the callbacks (a few minutes, bounded)
fuzz: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m fuzz

# kill -9 under load, store outages, a full or read-only disk (bounded, loopback only)
faults: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m faults

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/store_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
