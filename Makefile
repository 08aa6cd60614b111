# `make dev` runs the service embedded; `make test` runs the whole suite.
# Each creates .venv on first use (and again when the lock file changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF := npx --yes @bufbuild/buf@1.75.0

.PHONY: dev test lint protos lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/wfe dev

test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check service tenancy tiers workers tests bench
	$(BIN)/mypy

protos: $(STAMP)
	$(BIN)/python protos/generate.py
	$(BUF) lint

lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .wfe .pytest_cache .mypy_cache .ruff_cache .hypothesis
