# The README's two commands: `make demo` and `make test`. Each sets up what it needs
# (a virtual environment in .venv) on a fresh clone, then acts.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup browser bench synth stateful scale

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[local,dev,cdk,nag]'
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/approvals demo

# The CDK CLI, from npm, local to the project (package.json). npm writes
# node_modules/.package-lock.json on every install: stale when the manifests are newer.
NODE_STAMP := node_modules/.package-lock.json
# Offline-friendly: no notices or telemetry calls. jsii warns on every run that Node 20 is
# past its end of life; the CDK still works on it (Node 22+ silences this by itself).
CDK_ENV := CDK_DISABLE_CLI_TELEMETRY=true JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
EXAMPLE_APPROVERS := alice@example.com,bob@example.com

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The template with every part (two example approvers, so the subscriptions show) in cdk.out.
synth: $(STAMP) $(NODE_STAMP)
	$(CDK_ENV) npx cdk synth --no-notices --quiet -c approvers=$(EXAMPLE_APPROVERS)
	@echo "Synthesized into cdk.out/ (template: cdk.out/ApprovalsStack.template.json)"

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

# Three workers on two cores: much of the suite's time is waiting (the e2e stacks' sweeps,
# emails, a real schedule), so two workers left the cores half idle (604 s against 345 s);
# a fourth took as long (342 s against 339 s) for 90 more CPU-seconds (its collection, and
# four processes contending for two cores), measured in turn on 2026-12-06.
test: lint browser $(NODE_STAMP)
	$(BIN)/pytest -n 3 --dist loadgroup --no-loadscope-reorder

# The batch page at scale: a fan-out of 1,000 decided from the inbox in Chromium, in both
# modes (about 130 CPU-seconds a mode; make test runs the same test with 55 items).
scale: $(STAMP) browser $(NODE_STAMP)
	APPROVALS_E2E_DECIDED_ITEMS=1000 $(BIN)/pytest -n 2 --dist loadgroup tests/e2e/test_inbox_browser.py -k decided

# The model-based test (tests/reliability/test_stateful.py) at length: many more and longer
# examples than the few make test runs (APPROVALS_STATEFUL_EXAMPLES sets how many).
stateful: $(STAMP)
	APPROVALS_STATEFUL=long $(BIN)/pytest -q -p no:randomly tests/reliability/test_stateful.py

# Benchmarks print their figures; they are never part of the test suite's verdict.
# Each writes its figures into bench/results.json as well.
bench: $(STAMP)
	$(BIN)/python -m bench.cold_start
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.floor --requests 100
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.floor --requests 1000
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.profile_floor --requests 100
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.load --requests 1000
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.worker_batch
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.calls --requests 100
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.bulk_vote --requests 1000
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.inbox_page --entries 1000 10000
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.digest --items 1000
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.fanout_output --items 1000
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.fanout_scale --items 1000 --baseline-items 200
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m bench.fanout_local --items 1000
