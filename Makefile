# deploybot: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
export TEST_DATABASE_URL

.PHONY: install test demo serve lint lock clean bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/deploybot demo

# Minutes, not seconds: each prints ratios against baselines it starts itself (docs/performance.md).
# Needs Debian's wrk, Node.js and npm (the Probot baseline), and nothing else running.
bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/slack_ack.py
	$(BIN)/python bench/scheduler_scale.py

serve: install
	$(BIN)/deploybot serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Re-resolve the pins from pyproject.toml in a scratch venv.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet '.[dev]'
	{ echo "# Resolved versions; 'make install' installs with -c constraints.txt. Regenerate with 'make lock'."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^deploybot'; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
