# One virtual environment (.venv); system tools the tests need are installed when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps test lint serve bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

lint: install
	$(BIN)/ruff check .

test: install system-deps lint
	$(BIN)/pytest

# make serve ARGS="--sip-port 5060 mymodule:setup": flags and the app go to `atoms-gateway serve`
serve: install
	$(BIN)/atoms-gateway serve $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
