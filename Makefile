# The two commands of the README: `make demo` and `make test`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

venv: $(PY)

demo: $(PY)
	$(PY) -m pip install --quiet -e ".[all]"
	$(PY) examples/demo.py

test: $(PY)
	$(PY) -m pip install --quiet -e ".[all,dev,compat]"
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
