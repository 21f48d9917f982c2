# Sonalyze: `make run` starts the suite, `make test` runs every test. Each bootstraps .venv with just the set it needs.
# Install sets (top-level pins; locks/constraints.txt fixes every version, `make lock` regenerates locks/):
#   run    requirements.txt        services + tools        make run, make demo
#   test   requirements-dev.txt    run + test tools        make test, make install
#   bench  requirements-bench.txt  run + reference libs    make bench
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
CONSTRAINTS := locks/constraints.txt
UV_VERSION := 0.13.9
PACKAGES := libs/sonalyze_protocol libs/sonalyze_db libs/sonalyze_acoustics gateway lobby measurement simulation storage \
            tools/suite $(wildcard tools/devices)
RUN_INPUTS := requirements.txt $(CONSTRAINTS) $(wildcard */requirements.txt libs/*/requirements.txt) \
              $(wildcard */pyproject.toml libs/*/pyproject.toml tools/*/pyproject.toml)

.PHONY: help install run test lint demo bench lock compose-test replay-dead-letters web clean

help:
	@echo "make run           start all five services on 127.0.0.1:8000-8004 (Ctrl-C stops them)"
	@echo "make test          run every test (PostgreSQL when TEST_DATABASE_URL is set, else SQLite)"
	@echo "make lint          ruff lint and format check, mypy (make test runs it first)"
	@echo "make demo          a full virtual-phone measurement against the running suite"
	@echo "make bench         print the benchmarks' figures"
	@echo "make lock          regenerate locks/ after changing any requirements*.txt"
	@echo "make compose-test  build the images, start docker compose and check the suite through its gateway,"
	@echo "                   then the two-gateway layout (docker-compose.replicas.yml) through nginx"
	@echo "make replay-dead-letters   queue the storage records the services set aside again (OUTBOX_DIR=.run/outbox)"
	@echo "make web     rebuild web/vendor (the page's plotting library) from web/package-lock.json (needs npm)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sonalyze needs Python 3.11 or newer, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

# the suite's own packages are built with the locked setuptools in .venv: one build environment, not one each
$(VENV)/.installed-run: $(BIN)/python $(RUN_INPUTS) requirements-build.txt
	$(PIP) -c $(CONSTRAINTS) -r requirements.txt -r requirements-build.txt
	$(PIP) --no-deps --no-build-isolation $(addprefix -e ,$(PACKAGES))
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run requirements-dev.txt
	$(PIP) -c $(CONSTRAINTS) -r requirements-dev.txt
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-run requirements-bench.txt
	$(PIP) -c $(CONSTRAINTS) -r requirements-bench.txt
	@touch $@

install: $(VENV)/.installed-test

run: $(VENV)/.installed-run
	@$(BIN)/python -m sonalyze_suite run

test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff.toml: one lint and format rule set for the repository; mypy.ini: strict for libs/, the defaults for services
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check --quiet .
	$(BIN)/mypy

demo: $(VENV)/.installed-run
	@$(BIN)/python -m sonalyze_devices $(DEMO_ARGS)

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run_all.py

$(BIN)/uv: $(BIN)/python
	$(PIP) --force-reinstall --no-deps uv==$(UV_VERSION)

lock: $(BIN)/uv
	UV=$(BIN)/uv bash tools/lock.sh

compose-test: $(VENV)/.installed-run
	$(BIN)/python tools/compose_check.py $(COMPOSE_TEST_ARGS)

OUTBOX_DIR ?= .run/outbox
replay-dead-letters: $(VENV)/.installed-run
	$(BIN)/python -m sonalyze_protocol.outbox_replay $(OUTBOX_DIR)

# The page needs no Node at run time: web/vendor is committed; this rebuilds it from the lockfile.
web:
	cd web && npm ci
	cp web/node_modules/uplot/dist/uPlot.esm.js web/vendor/uplot.esm.js
	cp web/node_modules/uplot/dist/uPlot.min.css web/vendor/uplot.min.css
	cp web/node_modules/uplot/LICENSE web/vendor/uplot.LICENSE

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis
