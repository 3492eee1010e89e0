# Two commands for a newcomer: `make repro` (run the pipeline) and `make test`.
# Both create .venv on first use (idempotent) and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# stages call `face2anime`, so the venv's bin must be on PATH for dvc
export PATH := $(abspath $(BIN)):$(PATH)
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup browser repro real test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# face2anime repro = dvc repro with the CycleGAN trainings side by side (same results; docs/performance.md)
repro: setup
	@start=$$(date +%s); \
	$(BIN)/face2anime repro $(ARGS) || exit $$?; \
	echo "pipeline took $$(( $$(date +%s) - start )) s"

# Real photos and anime face crops: the real-data profile (docs/real-data.md) as one DVC
# experiment. PROFILE=real-gpu on a GPU.
PROFILE ?= real-cpu
real: setup
	@test -n "$(HUMAN)" -a -n "$(CHARACTER)" || { echo "usage: make real HUMAN=path/to/photos CHARACTER=path/to/anime-faces [PROFILE=real-gpu]"; exit 2; }
	@start=$$(date +%s); \
	$(BIN)/face2anime profile $(PROFILE) --human "$(HUMAN)" --character "$(CHARACTER)" $(ARGS) || exit $$?; \
	echo "pipeline took $$(( $$(date +%s) - start )) s"

# The browser test (tests/test_browser.py) drives Debian's chromium through Playwright; no
# browser build is ever downloaded. Installed here when missing (root + apt-get; about a
# minute on a fresh machine). Without it the browser tests fail (FACE2ANIME_NO_BROWSER=1 skips them).
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test (about a minute)..."; start=$$(date +%s); \
	    if DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >$${TMPDIR:-/tmp}/face2anime-apt.log 2>&1; then \
	      echo "chromium installed in $$(( $$(date +%s) - start )) s"; \
	    else tail -5 $${TMPDIR:-/tmp}/face2anime-apt.log 2>/dev/null; \
	      echo "warning: apt-get could not install chromium: the browser tests will fail (FACE2ANIME_NO_BROWSER=1 skips them)"; fi; \
	  else echo "warning: $(CHROMIUM) is missing and needs root + apt-get to install: the browser tests will fail (FACE2ANIME_NO_BROWSER=1 skips them)"; fi; \
	fi

# one pytest-xdist worker per core (JOBS=0: no workers, in-process); tests balance by work stealing.
# MARKS: the torch.compile determinism test (an opt-in speed path, compile: false by default)
# takes about 5 minutes with a cold inductor cache on a 2-core machine and the small-data collapse
# test (slow) about 140 s, so `make test` leaves them out; `make test MARKS=` runs everything.
JOBS  ?= auto
MARKS ?= not compile and not slow
test: setup browser
	$(BIN)/python -m pytest -n $(JOBS) --dist worksteal -m "$(MARKS)" $(ARGS)

bench: setup
	$(BIN)/face2anime bench

clean-venv:
	rm -rf $(VENV)
