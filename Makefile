# The README's two commands: `make demo` and `make test`. Each sets up what it needs
# (a virtual environment in .venv) on a fresh clone, then acts.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup browser bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/approvals demo

# The browser tests drive Debian's Chromium (Playwright's own download is not used).
browser:
	@command -v chromium >/dev/null || { \
		echo "Installing Debian's chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint browser
	$(BIN)/pytest -n 2 --dist loadgroup

# Benchmarks print their figures; they are never part of the test suite's verdict.
bench: $(STAMP)
	$(BIN)/python -m bench.cold_start
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.load --requests 1000
