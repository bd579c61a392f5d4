# The local stack and the project's gates. `make up` then `make test` is all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
ACCOUNT ?= demo
# The browser tests drive Debian's Chromium (no browser download); installed when missing.
CHROMIUM := /usr/bin/chromium

.PHONY: install up down clean status test test-faults test-unit lint bench admin-key schemas demo gateway

$(INSTALLED): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is needed (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]' -e clients/python
	@touch $(INSTALLED)

$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests..."
	@command -v apt-get >/dev/null || { echo "no apt-get: install Chromium at $(CHROMIUM)"; exit 1; }
	@export DEBIAN_FRONTEND=noninteractive; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q >/dev/null && \
		  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium >/dev/null; }
	@test -x $(CHROMIUM)

install: $(INSTALLED) $(CHROMIUM)

up: $(INSTALLED)
	@$(PY) -m devstack up

down:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; else echo "nothing to stop (no $(VENV))"; fi

clean:
	@if [ -x $(PY) ]; then $(PY) -m devstack clean; else rm -rf .data .run; fi

status: $(INSTALLED)
	@$(PY) -m devstack status

test: $(INSTALLED) $(CHROMIUM)
	@$(PY) -m devstack up
	@$(PY) -m pytest

# The fault and abuse suite in its long form (the issue's rounds); writes docs/RELIABILITY.md.
test-faults: $(INSTALLED)
	@$(PY) -m devstack up
	@FAULTS_FULL=1 $(PY) -m pytest tests/faults

test-unit: $(INSTALLED)
	@$(PY) -m pytest tests/unit

lint: $(INSTALLED)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy .

bench: $(INSTALLED)
	@command -v wrk >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q wrk nginx-light >/dev/null 2>&1 || \
		{ $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q >/dev/null && \
		  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q wrk nginx-light >/dev/null; }; }
	@$(PY) -m devstack up
	@$(PY) -m bench

# nginx (Debian's, installed when missing) with forward auth to the keys service, in front
# of the sample model API: http://127.0.0.1:8080 (GATEWAY_PORT). `make down` stops it.
gateway: $(INSTALLED)
	@$(PY) -m devstack up
	@$(PY) -m devstack gateway

admin-key: $(INSTALLED)
	@$(PY) -m devstack admin-key $(ACCOUNT)

demo: $(INSTALLED)
	@$(PY) -m devstack up
	@$(PY) -m services.usage.demo

schemas: $(INSTALLED)
	@$(PY) -m contracts.schema docs/schemas
