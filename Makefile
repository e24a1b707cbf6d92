# HistoSynth: `make run` serves on embedded defaults, `make test` runs the test suite.
# Both build the virtual environment first when it is missing or pyproject.toml changed.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: install run test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: a bare `pip install -e .` would pull a multi-GB CUDA build
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/histosynth serve

test: $(STAMP)
	$(PY) -m pytest -q -rs -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not integration"

lint: $(STAMP)
	$(VENV)/bin/ruff check model worker service tests

bench: $(STAMP)
	$(VENV)/bin/histosynth bench generate --size 256,512,1024 --batch 1,4 --device cpu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
