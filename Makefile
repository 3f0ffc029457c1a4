# Two commands for a fresh machine: `make demo` and `make test` (each sets up .venv when missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow clean-venv

setup: $(STAMP)

# Re-installs when the dependency pins change; `pip install -e` keeps bundle/sdmad live for development.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir -c constraints.txt -e ".[dev]"
	@touch $@

demo: setup
	$(PY) scripts/network_summary.py --config_file configs/inference.yaml configs/demo.yaml

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

clean-venv:
	rm -rf $(VENV)
