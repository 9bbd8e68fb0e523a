# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
# `make test` also installs the pinned JS peers (`npm ci`) and runs the suite in a loopback-only
# network namespace (scripts/loopback-netns, as root); browser tests need Debian's chromium.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := crdtsync tests benchmarks examples
NODE_MODULES := node_modules/.package-lock.json

.PHONY: test lint demo bench browser-example clean

$(BIN)/activate-crdtsync: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# y-webrtc, yjs, @roamhq/wrtc, esbuild: exactly as package-lock.json says.
$(NODE_MODULES): package.json package-lock.json
	npm ci
	touch $@

lint: $(BIN)/activate-crdtsync
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

test: lint $(BIN)/activate-crdtsync $(NODE_MODULES)
	scripts/loopback-netns $(BIN)/pytest

demo: $(BIN)/activate-crdtsync
	$(BIN)/crdtsync demo

bench: $(BIN)/activate-crdtsync
	scripts/loopback-netns $(BIN)/crdtsync bench --out benchmarks/results --plot

# The shared editor page of examples/browser (see its README).
browser-example: examples/browser/dist/editor.js

examples/browser/dist/editor.js: examples/browser/editor.js $(NODE_MODULES)
	node_modules/.bin/esbuild $< --bundle --format=iife --platform=browser --log-level=warning --outfile=$@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis node_modules examples/browser/dist
