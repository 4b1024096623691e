# Quick start: `make run` (serve on http://127.0.0.1:5000) and `make test` (whole suite).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint keys setup clean bench audit

# The pinned requirements, then this checkout as the installed packages (editable): identity-verify, which
# the service requires, and the service, whose console commands (identity-keys, ...) run scripts/*.py.
# identity-verify in setuptools' compat mode: its default editable mode would make `identity` a namespace
# package that hides identity/__init__.py (create_app) from code run outside the checkout.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml packages/identity-verify/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -e packages/identity-verify \
		--config-settings editable_mode=compat
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

setup: $(STAMP)

keys: $(STAMP)
	IDENTITY_ENV=development $(BIN)/python scripts/keys.py init --development --if-absent >/dev/null

run: keys  # the production start command (scripts/serve.py) with development settings
	IDENTITY_ENV=development $(BIN)/python scripts/serve.py --bind $(HOST):$(PORT) --workers 2 --threads 4 \
		--access-log

# See it work: the service with its development IdP, the example downstream service and the example app
# (examples/demo.py) on 127.0.0.1:5000, :5001 and :8000; open http://127.0.0.1:8000. State in var/demo/.
.PHONY: demo
demo: $(STAMP)
	$(BIN)/python -m examples.demo

lint: $(STAMP)  # ruff and mypy, configured in pyproject.toml (no formatter); CI runs it
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)  # -rs: say why a test was skipped (e.g. no Chromium)

# Benchmarks (BENCHMARKS.md): `make bench`, or `make bench BENCH_ARGS=--quick` for a short run.
$(VENV)/.bench-installed: $(STAMP) requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench: $(VENV)/.bench-installed
	@command -v wrk >/dev/null || { echo "bench: installing wrk, the load generator (apt-get install wrk)"; \
		(apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1 || \
		{ echo "bench: could not install wrk; install it (Debian: apt-get install wrk) and run make bench again" >&2; \
		exit 1; }; }
	@if command -v npm >/dev/null; then (cd bench/peer && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || \
		echo "bench: npm ci in bench/peer failed: the peer (oidc-provider) row is left out" >&2; \
		else echo "bench: Node.js (npm) is missing: the peer (oidc-provider) row is left out" >&2; fi
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

audit: $(STAMP)  # pip-audit over the pinned dependencies; skips (exit 0) when no vulnerability data is reachable
	$(BIN)/python -m tests.security.audit_gate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
