# Two commands: `make serve` (set up, then run arcus serve on the embedded default profile)
# and `make test` (set up, then run the whole test suite). .ci/run calls `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Packages mypy must be clean on (CI runs it through `make test`). arcus/serve and arcus/tenancy
# join when core's rewrite has landed; store, stats, tls, auth and tui are clean today too
# (to add once the branches changing store and auth have landed).
MYPY_PACKAGES ?= arcus/proto arcus/policy arcus/limit arcus/escape arcus/resolve

.PHONY: setup serve test system-deps bench lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,tui]'
	touch $@

serve: setup
	$(VENV)/bin/arcus serve $(ARGS)

system-deps:
	bash scripts/system-deps.sh test

lint: setup
	$(VENV)/bin/ruff check arcus tests
	$(VENV)/bin/mypy $(MYPY_PACKAGES)

test: setup system-deps lint
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	bash scripts/system-deps.sh bench
	$(PY) bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
