# Sonalyze: `make run` starts the suite, `make test` runs every test. Both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sonalyze-installed
PACKAGES := libs/sonalyze_protocol libs/sonalyze_acoustics gateway lobby measurement simulation storage \
            tools/suite $(wildcard tools/devices)
INSTALL_INPUTS := requirements-dev.txt $(wildcard */requirements.txt) \
                  $(wildcard */pyproject.toml libs/*/pyproject.toml tools/*/pyproject.toml)

.PHONY: help install run test demo bench clean replay-dead-letters

help:
	@echo "make run     start all five services on 127.0.0.1:8000-8004 (Ctrl-C stops them)"
	@echo "make test    run every test (PostgreSQL when TEST_DATABASE_URL is set, else SQLite)"
	@echo "make demo    a full virtual-phone measurement against the running suite"
	@echo "make bench   print the benchmarks' figures"
	@echo "make replay-dead-letters   queue the storage records the services set aside again (OUTBOX_DIR=.run/outbox)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sonalyze needs Python 3.11 or newer, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python $(INSTALL_INPUTS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(addprefix -e ,$(PACKAGES))
	@touch $@

install: $(STAMP)

run: $(STAMP)
	@$(BIN)/python -m sonalyze_suite run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	@$(BIN)/python -m sonalyze_devices $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

OUTBOX_DIR ?= .run/outbox
replay-dead-letters: $(STAMP)
	$(BIN)/python -m sonalyze_protocol.outbox_replay $(OUTBOX_DIR)

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis
