# Two commands for a newcomer: `make repro` (run the pipeline) and `make test`.
# Both create .venv on first use (idempotent) and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# stages call `face2anime`, so the venv's bin must be on PATH for dvc
export PATH := $(abspath $(BIN)):$(PATH)
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup repro test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

repro: setup
	@start=$$(date +%s); \
	$(BIN)/dvc repro $(ARGS) || exit $$?; \
	echo "pipeline took $$(( $$(date +%s) - start )) s"

test: setup
	$(BIN)/python -m pytest $(ARGS)

bench: setup
	$(BIN)/face2anime bench

clean-venv:
	rm -rf $(VENV)
