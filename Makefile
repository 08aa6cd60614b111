# `make dev` runs the service embedded (`make dev ADDRESS=127.0.0.1:50052` to listen elsewhere);
# `make test` runs lint and the whole suite (CI); `make check` runs the fast tier for the edit
# loop, in about half a minute: the unit and SQLite integration tests that are not slow by
# design (markers: tests/conftest.py).
# Each creates .venv on first use (and again when a lock file changes): `make dev` installs
# the runtime dependencies only (requirements-runtime.lock); the others add the dev tools.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
ADDRESS ?=
BUF := npx --yes @bufbuild/buf@1.75.0

.PHONY: dev test check lint protos lock clean

$(RUNTIME): pyproject.toml requirements-runtime.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-runtime.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME) requirements.lock
	$(BIN)/python -m pip install --quiet -r requirements.lock
	touch $(STAMP)

dev: $(RUNTIME)
	$(BIN)/wfe dev$(if $(ADDRESS), --address $(ADDRESS))

test: $(STAMP) lint
	$(BIN)/pytest --durations=25

check: $(STAMP)
	$(BIN)/pytest -q -x -m "not postgres and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check foundation persistence tenancy tiers engine service workers gateway cli tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

protos: $(STAMP)
	$(BIN)/python protos/generate.py
	$(BUF) lint

lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	uv pip compile pyproject.toml --python-version 3.11 -c requirements.lock -o requirements-runtime.lock

clean:
	rm -rf $(VENV) .wfe .pytest_cache .mypy_cache .ruff_cache .hypothesis
