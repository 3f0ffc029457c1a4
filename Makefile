# Two commands for a fresh machine: `make demo` and `make test` (each sets up .venv when missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow benchmark-phantom clean-venv

setup: $(STAMP)

# Re-installs when the dependency pins change; `pip install -e` keeps bundle/sdmad live for development.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir -c constraints.txt -e ".[dev]"
	@touch $@

# phantom data (made once) -> tiny CLIP pretrained on phantom captions (once, ~2 min) -> training -> evaluating
# (trained and zero-shot) -> inference; offline, CPU.
demo: setup
	$(PY) scripts/demo.py

# The phantom benchmark of the README: 3 seeds, trained vs zero-shot, mean ± std (runs/phantom_benchmark/summary.md).
benchmark-phantom: setup
	$(PY) scripts/multi_seed.py --seeds 0 1 2 --run-name phantom_benchmark --demo

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

clean-venv:
	rm -rf $(VENV)
