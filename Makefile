# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := crdtsync tests benchmarks examples

.PHONY: test lint demo bench clean

$(BIN)/activate-crdtsync: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

lint: $(BIN)/activate-crdtsync
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: $(BIN)/activate-crdtsync
	$(BIN)/crdtsync demo

bench: $(BIN)/activate-crdtsync
	$(BIN)/crdtsync bench --out benchmarks/results --plot

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
