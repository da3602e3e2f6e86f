# Two commands: `make serve` (set up, then run arcus serve on the embedded default profile)
# and `make test` (set up, then run the whole test suite). .ci/run calls `make test`, then
# `make smoke`: `make binary` builds the one-file dist/arcus with PyInstaller (packaging/arcus.spec)
# and packaging/smoke.sh runs it alone from an empty directory.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Packages mypy must be clean on (CI runs it through `make test`); arcus/config needs the
# types-PyYAML stubs of the test extra. arcus/serve/http_proxy.py is excused in pyproject.toml.
MYPY_PACKAGES ?= arcus/proto arcus/policy arcus/limit arcus/escape arcus/resolve arcus/config arcus/tls \
	arcus/tenancy arcus/serve arcus/ops arcus/auth arcus/store arcus/stats arcus/tui arcus/icap \
	arcus/audit arcus/cli arcus/control arcus/runtime
# Arcus needs Python 3.11+ (pyproject.toml's requires-python).
NEW_ENOUGH := import sys; sys.exit(sys.version_info < (3, 11))

.PHONY: setup python-check serve test system-deps bench lint clean binary smoke

# The Python check first, every time; then the venv is made, or kept if it is up to date.
setup: python-check
	@$(MAKE) --no-print-directory -q $(VENV)/.installed || $(MAKE) --no-print-directory $(VENV)/.installed

# PYTHON must be 3.11+ (else one line saying what to do, exit 1). A venv made by an older
# Python (or whose Python is gone) is removed and made again with PYTHON, saying so.
python-check:
	@$(PYTHON) -c '$(NEW_ENOUGH)' 2>/dev/null || { \
	  echo "error: Arcus needs Python >= 3.11 and $(PYTHON) is $$(command -v $(PYTHON) >/dev/null && $(PYTHON) -V 2>&1 || echo 'not installed'): install python3.11 (or newer) and python3-venv, or run make PYTHON=/path/to/python3.11" >&2; \
	  exit 1; }
	@if [ -e $(VENV) ] && ! $(PY) -c '$(NEW_ENOUGH)' 2>/dev/null; then \
	  echo "note: $(VENV) was made by $$($(PY) -V 2>&1 || echo 'a Python that is gone'), older than 3.11: making it again with $$($(PYTHON) -V 2>&1)" >&2; \
	  rm -rf $(VENV); \
	fi

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

# PyInstaller comes from the `build` extra, installed into the same venv on first use.
$(VENV)/.build-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test,tui,build]'
	touch $@

# About 20-30 s on two cores; build/pyinstaller keeps PyInstaller's cache between runs.
binary: setup $(VENV)/.build-installed
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/arcus.spec
	@ls -l dist/arcus

smoke: binary system-deps
	bash packaging/smoke.sh dist/arcus

bench: setup
	bash scripts/system-deps.sh bench
	$(PY) bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
