# Keyward — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
FLASK   = $(BIN)/flask --app wsgi
HASH    = $(shell cksum pyproject.toml | cut -d' ' -f1)
STAMP   = $(VENV)/.installed-$(HASH)
TEST_STAMP = $(VENV)/.installed-test-$(HASH)
CHROMIUM ?= /usr/bin/chromium
PORT    ?= 5000

.PHONY: install install-test browser run test test-fast coverage coverage-gate mutate lint bench bench-webhooks clean

# Serving needs only the application's dependencies; the test tools (pytest, Playwright,
# schemathesis, ...) come with the first `make test`.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

# Debian's Chromium for the Playwright browser tests (never `playwright install`).
browser:
	@test -x $(CHROMIUM) || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The server and, beside it, the worker (queue jobs, emails, reminders, the sweep). Ctrl-C, or
# stopping make, stops both: the shell traps the signal (and its own exit) and ends them. The
# worker's log lines start with "worker", the server's request lines with the client address.
run: install
	$(FLASK) db upgrade
	$(FLASK) demo --port $(PORT)
	@echo "Serving Keyward on http://127.0.0.1:$(PORT) with a background worker (Ctrl-C stops both)"
	@trap 'kill $$worker $$server 2>/dev/null; wait' EXIT; trap 'exit 0' INT TERM; \
	$(FLASK) worker & worker=$$!; \
	$(FLASK) run --host 127.0.0.1 --port $(PORT) & server=$$!; \
	wait $$server

test: install-test browser
	$(BIN)/python -m pytest $(PYTEST_COVERAGE) $(PYTEST_ARGS)

# Style and architecture: ruff, the import-linter contracts (layers point one way) and no import cycle.
lint: install
	$(BIN)/pip install --quiet -e '.[lint]'
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/import_cycles.py

test-fast: install-test
	$(BIN)/python -m pytest -m "not browser" -x $(PYTEST_ARGS)

# Branch coverage of the whole suite, then the gates: the modules that decide access fully covered,
# the total at least 95 %. `make test COVERAGE=yes` measures a run, `COVERAGE=append` adds a run to
# the previous one's figures (CI: SQLite, then PostgreSQL + Redis), `make coverage-gate` checks them.
COVERAGE_ARGS = --cov=shared --cov=api --cov=portal --cov=partner_hub --cov-branch \
                --cov-report=term-missing:skip-covered
PYTEST_COVERAGE = $(if $(filter yes append,$(COVERAGE)),$(COVERAGE_ARGS)) $(if $(filter append,$(COVERAGE)),--cov-append)
coverage:
	$(MAKE) test COVERAGE=yes
	$(MAKE) coverage-gate

coverage-gate: install-test
	$(BIN)/python tools/coverage_gate.py

# Mutation testing (mutmut, [tool.mutmut] in pyproject.toml) of the modules that decide access: slow,
# on demand, never in CI. `make mutate MUTANTS='shared.tokens.format*'` runs some; results: mutmut results.
mutate: install-test
	$(BIN)/pip install --quiet -e '.[mutation]'
	$(BIN)/mutmut run $(MUTANTS)
	$(BIN)/mutmut results

bench: install-test
	$(BIN)/python bench/run.py

# Webhook delivery: events/s and change-to-delivery delay, one worker, queue on SQLite and Redis;
# then isolation: healthy endpoints' delay with one receiver hanging against all healthy.
bench-webhooks: install-test
	$(BIN)/python bench/webhooks.py

clean:
	rm -rf $(VENV) instance/*.db* .pytest_cache .coverage mutants
