# The two commands of the README: `make demo` and `make test`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# test-min: the same suites at the oldest supported versions (constraints/minimum.txt), in a venv of its own, and the
# client's tests with the client alone at its own floors (constraints/minimum-client.txt) in another.
VENV_MIN ?= .venv-min
PY_MIN := $(VENV_MIN)/bin/python
VENV_MIN_CLIENT ?= .venv-min-client
PY_MIN_CLIENT := $(VENV_MIN_CLIENT)/bin/python
# bench-runs: MLflow (for its search_runs, side by side) in a venv of its own, never in $(VENV).
VENV_MLFLOW ?= .venv-mlflow
PY_MLFLOW := $(VENV_MLFLOW)/bin/python

.PHONY: demo test test-slow test-min lint docs venv clean postgresql chromium bench-tools bench-runs

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

venv: $(PY)

demo: $(PY)
	$(PY) -m pip install --quiet -e ".[all]"
	$(PY) examples/demo.py

# The default suite in TEST_WORKERS processes (pytest-xdist), each taking whole test files: on a 2-core machine
# it keeps the suite within its five minutes. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: $(PY) postgresql chromium
	$(PY) -m pip install --quiet -e ".[all,dev,compat]"
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The tests marked slow (left out of `make test` to keep it under five minutes); CI runs them too.
test-slow: $(PY) postgresql chromium
	$(PY) -m pip install --quiet -e ".[all,dev,compat]"
	$(PY) -m pytest -m slow

# ruff (lint and format check) and mypy (strict on the package), as configured in pyproject.toml.
lint: $(PY)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The documentation site, into site/: strict, so a broken link or an API reference that does not resolve fails.
# (Its examples run in `make test`: tests/test_docs.py.)
docs: $(PY)
	$(PY) -m pip install --quiet -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

$(PY_MIN):
	$(PYTHON) -m venv $(VENV_MIN)
	$(PY_MIN) -m pip install --quiet --upgrade pip

$(PY_MIN_CLIENT):
	$(PYTHON) -m venv $(VENV_MIN_CLIENT)
	$(PY_MIN_CLIENT) -m pip install --quiet --upgrade pip

# Tests that need the server's own modules in the test process; the others start their servers with .venv-min's
# Python (WANDB_FILES_TEST_SERVER_PYTHON). The S3-compatible server (moto) runs in the test process, so the client's
# venv has it too: a test tool, like pytest.
NEEDS_SERVER := --ignore=tests/server --ignore=tests/scale --ignore=tests/test_docs.py \
	--ignore=tests/transfer/test_names_property.py

# The compat suite needs the real wandb client, which brings its own modern dependencies: not run here.
test-min: $(PY_MIN) $(PY_MIN_CLIENT) postgresql chromium
	$(PY_MIN) -m pip install --quiet -e ".[all,dev]" -c constraints/minimum.txt
	$(PY_MIN) -m pytest -q tests --ignore=tests/compat
	$(PY_MIN_CLIENT) -m pip install --quiet -e ".[pandas,fsspec,parquet,proxy]" pytest pytest-xdist pytest-timeout hypothesis \
		trustme "moto[server]" -c constraints/minimum-client.txt
	WANDB_FILES_TEST_SERVER_PYTHON=$(abspath $(PY_MIN)) $(PY_MIN_CLIENT) -m pytest -q -n $(TEST_WORKERS) \
		--dist loadfile tests --ignore=tests/compat $(NEEDS_SERVER)

# The PostgreSQL server the scale-out tests start (initdb + pg_ctl in a temp folder, loopback only): Debian's
# package, installed only when missing and we are root. Otherwise those tests skip and say why.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing PostgreSQL (apt-get install postgresql) for the scale-out tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
		|| echo "PostgreSQL could not be installed: the PostgreSQL tests will be skipped"; \
	else echo "PostgreSQL is not installed and this is not root: the PostgreSQL tests will be skipped"; fi

# nginx and wrk for benchmarks/bench_bytes.py (our server next to nginx on the same file): Debian's packages,
# installed only when missing and we are root. No test needs them.
bench-tools:
	@if command -v wrk >/dev/null && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing nginx and wrk (apt-get install nginx wrk) for benchmarks/bench_bytes.py"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null; \
	else echo "nginx and wrk are missing and this is not root: install them to run benchmarks/bench_bytes.py"; exit 1; fi

# The browser the web page's tests drive (Playwright with executable_path; Playwright's own browser downloads are
# never used): Debian's package, installed only when missing and we are root. Otherwise those tests skip and say why.
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Chromium (apt-get install chromium) for the web page's browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "Chromium could not be installed: the browser tests will be skipped"; \
	else echo "Chromium is not installed and this is not root: the browser tests will be skipped"; fi

$(PY_MLFLOW):
	$(PYTHON) -m venv $(VENV_MLFLOW)
	$(PY_MLFLOW) -m pip install --quiet --upgrade pip mlflow

# Choosing runs at 10,000 and 100,000 runs on SQLite and PostgreSQL, next to MLflow's search_runs on 10,000.
bench-runs: $(PY) $(PY_MLFLOW) postgresql
	$(PY) -m pip install --quiet -e ".[all]"
	nice -n 10 $(PY) benchmarks/bench_runs.py --mlflow-python $(PY_MLFLOW)

clean:
	rm -rf $(VENV) $(VENV_MIN) $(VENV_MIN_CLIENT) $(VENV_MLFLOW) build site *.egg-info .pytest_cache
