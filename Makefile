# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Held by whatever installs Debian packages here (scripts/*-env.sh too), so that set-up
# steps running side by side take turns instead of failing on dpkg's lock.
export APT_LOCK ?= /var/lock/mlcycle-apt.lock

.PHONY: install demo test coverage lint typecheck test-imports check bench clean docker-env browser postgres checkov mlflow

# The venvs are made by Python's venv (so each has its pip: mlcycle runs `python -m pip
# wheel` from a checkout) and filled by uv, which resolves and installs from its cache in
# seconds where pip took 131 s of wall and 110 s of CPU for this one on a fresh clone
# (about half of it byte-compiling every module of every dependency; uv compiles nothing,
# and a process compiles what it imports, once). uv reads no pip.conf: UV_INDEX_URL and
# friends point it at another index. Where uv fails, pip installs as before.
define fill_venv
	$(1)/bin/pip install --quiet --upgrade pip uv
	$(1)/bin/uv pip install --quiet --python $(1)/bin/python $(2) \
		|| $(1)/bin/pip install --quiet --no-compile $(2)
endef

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call fill_venv,$(VENV),-e '.[dev]')
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check mlcycle tests benchmarks scripts
	$(BIN)/ruff format --check mlcycle tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# What the tests import, compiled once by pytest collecting them (asserts rewritten too),
# during the set-up: otherwise the three workers each compile it at the same moment, cold
# (measured on a fresh venv: 63 s of CPU and 38 of wall before the first test, against
# 26 s once here and then 27 and 14).
# Its list of tests goes to a file; a collection error is shown (the run would stop here).
test-imports: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -q -p no:cacheprovider \
		>$(VENV)/collected.txt 2>&1 || { tail -40 $(VENV)/collected.txt; exit 1; }

# The image tests build and run real containers: docker-env brings up the engine, and
# MLCYCLE_REQUIRE_DOCKER=1 makes them fail (not skip) if it is missing. Likewise the
# PostgreSQL tests run against the server `postgres` starts (a database per test).
# MLCYCLE_REQUIRE_CHECKOV=1: the Kubernetes hardening test fails (not skips) without checkov;
# MLCYCLE_REQUIRE_MLFLOW=1: the tracking tests fail (not skip) without an mlflow server.
# The tests run on TEST_WORKERS pytest-xdist workers: most of a test's time is spent
# waiting (git, Docker builds, servers, subprocesses), so more workers than cores pay.
# tests/scheduling.py decides which tests go to one worker together.
# Bytecode caches are written, as on a developer's machine, also where the environment
# turns them off (PYTHONDONTWRITEBYTECODE, set on some CI machines): without them every
# CLI subprocess compiles mlcycle again and every worker rewrites every test module's
# asserts (measured: 13% of the CPU of the whole make test), and what writing them does
# to a project goes unseen.
# The set-up runs in parallel (SETUP_JOBS): on a fresh machine it is three venvs to
# fill (about 20 s each with uv), the services, lint, mypy (36 s without its cache) and
# compiling the tests' imports: about 1 minute side by side on a fresh clone here, most
# of it the venv and then mypy. The scripts that install Debian packages take turns on
# dpkg's lock (APT_LOCK).
# PYTEST_ARGS narrows the run, e.g. the quick loop while developing, every test not
# marked slow (1,939 of 2,142, about 3 minutes here): make test PYTEST_ARGS='-m "not slow"'
PG_PORT ?= 54329
TEST_WORKERS ?= 3
SETUP_JOBS ?= 3
PYTEST_ARGS ?=
test:
	$(MAKE) --no-print-directory -j$(SETUP_JOBS) \
		$(STAMP) lint typecheck test-imports docker-env browser postgres checkov mlflow
	env -u PYTHONDONTWRITEBYTECODE \
	MLCYCLE_REQUIRE_DOCKER=1 MLCYCLE_REQUIRE_POSTGRES=1 MLCYCLE_REQUIRE_CHECKOV=1 \
	MLCYCLE_REQUIRE_MLFLOW=1 \
	MLCYCLE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$(PG_PORT)/postgres \
		$(BIN)/pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The suite under coverage, subprocesses included (CLI runs, servers and their workers
# each write a data file; see [tool.coverage] in pyproject.toml), then the table.
COVERAGE_DIR := $(CURDIR)/.coverage-data
# The same services and MLCYCLE_REQUIRE_* as `make test`, so that no test skips here that
# runs there (the tracking tests are what measure agents/integration.py's MLflow path).
# PYTEST_ARGS narrows it, e.g. PYTEST_ARGS='tests/agents tests/store'.
coverage: $(STAMP) docker-env browser postgres checkov mlflow
	rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	env -u PYTHONDONTWRITEBYTECODE COVERAGE_FILE=$(COVERAGE_DIR)/coverage \
	MLCYCLE_REQUIRE_DOCKER=1 MLCYCLE_REQUIRE_POSTGRES=1 MLCYCLE_REQUIRE_CHECKOV=1 \
	MLCYCLE_REQUIRE_MLFLOW=1 \
	MLCYCLE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$(PG_PORT)/postgres \
		$(BIN)/coverage run -m pytest -q $(PYTEST_ARGS)
	COVERAGE_FILE=$(COVERAGE_DIR)/coverage $(BIN)/coverage combine -q
	COVERAGE_FILE=$(COVERAGE_DIR)/coverage $(BIN)/coverage report

# bench_registry.py compares the local registry with PostgreSQL + the OCI registry on
# 127.0.0.1:5000 (the servers `postgres` and `docker-env` start); it skips that half,
# saying why, when either is not running.
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq nghttp2-client)
	export MLCYCLE_BENCH_POSTGRES_URL=$${MLCYCLE_BENCH_POSTGRES_URL:-postgresql://postgres@127.0.0.1:$(PG_PORT)/postgres}; \
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# Docker engine, local registry on 127.0.0.1:5000 and the base image, for the image tests.
docker-env:
	bash scripts/docker-env.sh

# A PostgreSQL server of its own on 127.0.0.1:$(PG_PORT) (Debian's package), for the
# data-source and prediction-store tests that run against a real one.
postgres:
	MLCYCLE_PG_PORT=$(PG_PORT) bash scripts/postgres-env.sh

# checkov, the Kubernetes hardening scanner the manifests are tested with, in a venv of its
# own: its pins (packaging, platformdirs...) conflict with mlcycle's dev dependencies.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(call fill_venv,$(CHECKOV_VENV),'checkov==$(CHECKOV_VERSION)')
	touch $@

checkov: $(CHECKOV_VENV)/.installed

# The full mlflow (server, UI, SQL backend), whose `mlflow server` the tracking tests start
# on 127.0.0.1; a venv of its own: mlflow pins many libraries mlcycle's venv has newer.
# mlcycle itself only needs the client side, mlflow-skinny (the [mlflow] extra).
MLFLOW_VENV := .venv-mlflow
MLFLOW_VERSION := 3.17.2
$(MLFLOW_VENV)/.installed:
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(call fill_venv,$(MLFLOW_VENV),'mlflow==$(MLFLOW_VERSION)' skops)
	touch $@

mlflow: $(MLFLOW_VENV)/.installed

# Headless Chromium renders the HTML report in its test (Debian's package).
browser:
	command -v chromium >/dev/null || flock $(APT_LOCK) sh -c 'apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium' 

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(MLFLOW_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage-data build dist *.egg-info
