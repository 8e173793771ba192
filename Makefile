# routewatch: the two commands a new user needs are `make demo` and `make test`.
# Every target installs what it needs first (a virtual environment in .venv, Debian packages for the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RW := $(VENV)/bin/routewatch
STAMP := $(VENV)/.installed
WORKSPACE ?= demo-workspace

.PHONY: demo test bench lint typecheck system-deps web-assets clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Leaflet comes from the npm registry into an ignored folder, then is copied into the package's static files.
web-assets:
	bash scripts/web-assets.sh

demo: $(STAMP) web-assets
	$(RW) demo --workspace $(WORKSPACE)

system-deps:
	bash scripts/system-deps.sh

test: $(STAMP) system-deps web-assets
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

bench: $(STAMP) system-deps
	$(PY) -m benchmarks.run

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks || true

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(WORKSPACE) .pytest_cache build node_modules
