# The two commands of the README: `make demo` and `make test`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv clean postgresql

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

venv: $(PY)

demo: $(PY)
	$(PY) -m pip install --quiet -e ".[all]"
	$(PY) examples/demo.py

test: $(PY) postgresql
	$(PY) -m pip install --quiet -e ".[all,dev,compat]"
	$(PY) -m pytest

# The PostgreSQL server the scale-out tests start (initdb + pg_ctl in a temp folder, loopback only): Debian's
# package, installed only when missing and we are root. Otherwise those tests skip and say why.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing PostgreSQL (apt-get install postgresql) for the scale-out tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
		|| echo "PostgreSQL could not be installed: the PostgreSQL tests will be skipped"; \
	else echo "PostgreSQL is not installed and this is not root: the PostgreSQL tests will be skipped"; fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
