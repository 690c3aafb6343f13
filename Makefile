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

# every benchmark, each bounded in time; the output goes to the screen and bench/last-run.txt
# (copy its figures into bench/RESULTS.md). Not a test: figures vary with the machine's load.
bench: $(STAMP)
	@( echo "== $$(date -u '+%F %T UTC'); $$(uname -srm); $$(nproc) CPUs; $$(uptime)"; \
	  echo "== bench/store_bench.py"; timeout 900 $(BIN)/python bench/store_bench.py --members 5000; \
	  echo "== bench/jobs_bench.py (short sizes)"; \
	  timeout 900 $(BIN)/python bench/jobs_bench.py --sizes 10000 50000 --runs 1; \
	  echo "== bench/oa_bench.py (a) check-ins (b) first contact (c) peak (d) start and size"; \
	  timeout 1500 $(BIN)/python bench/oa_bench.py; \
	  echo "== $$(uptime)" ) 2>&1 | tee bench/last-run.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
