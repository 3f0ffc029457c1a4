# Two commands for a fresh machine: `make demo` and `make test` (each sets up .venv when missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LABEL_VENV ?= .venv-label
LABEL_PY := $(LABEL_VENV)/bin/python
LABEL_STAMP := $(LABEL_VENV)/.installed
LABEL_PORT ?= 8000
DEPLOY_VENV ?= .venv-deploy
DEPLOY_PY := $(DEPLOY_VENV)/bin/python
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
# holoscan (under the MONAI Deploy SDK) asks for a 32 MiB stack
BIG_STACK := ulimit -s 32768 &&
DEMO_MODEL := runs/demo/training/model.pt

.PHONY: setup label-env deploy-env lock demo lint test test-slow benchmark benchmark-phantom label-server deploy-run clean-venv

setup: $(STAMP)

# Three independent environments (core, MONAI Label, MONAI Deploy), each installed exactly from its lock file by uv
# and checked with `uv pip check`. uv's cache hard-links the same torch into all three, so the second and third
# cost little disk or time (docs/design.md, "Environments"). uv itself is pinned in constraints.txt.
UV := $(VENV)/bin/uv
LOCK_PYTHON ?= 3.11
# uv does not read pip's settings: hand it the package indexes and find-links pip is configured with (pip.conf or
# PIP_* variables: a local mirror, if any). unsafe-best-match only then: such a mirror may hold some versions of a
# package only (every version is pinned in the locks anyway). pip is asked once; the settings are read from that.
PIP_CONFIG := $(shell $(PYTHON) -m pip config list 2>/dev/null | tr '\n' '|')
pip_setting = $(shell printf '%s' "$(PIP_CONFIG)" | tr '|' '\n' | sed -n "s/^[^.]*\.$(1)='\(.*\)'$$/\1/p" | head -1)
PIP_INDEX := $(call pip_setting,index-url)
PIP_EXTRA_INDEXES := $(call pip_setting,extra-index-url)
PIP_LINKS := $(call pip_setting,find-links)
ifneq ($(PIP_INDEX),)
export UV_DEFAULT_INDEX ?= $(PIP_INDEX)
endif
ifneq ($(PIP_EXTRA_INDEXES),)
export UV_EXTRA_INDEX_URL ?= $(PIP_EXTRA_INDEXES)
export UV_INDEX_STRATEGY ?= unsafe-best-match
endif
ifneq ($(PIP_LINKS),)
export UV_FIND_LINKS ?= $(PIP_LINKS)
endif
# Byte-compile at install as pip does: with PYTHONDONTWRITEBYTECODE set (CI sets it), nothing else ever writes the
# .pyc files, and every process would compile torch & co. again on import (15 s each).
export UV_COMPILE_BYTECODE ?= 1
UV_INSTALL = $(UV) pip install --quiet --no-deps --python

$(UV):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir $$(grep '^uv==' constraints.txt)

$(STAMP): requirements/core.lock pyproject.toml | $(UV)
	$(UV_INSTALL) $(PY) -r requirements/core.lock
	$(UV_INSTALL) $(PY) -e .
	$(UV) pip check --quiet --python $(PY)
	@touch $@

# MONAI Label needs numpy<2 and pydicom<3: its own environment.
label-env: $(LABEL_STAMP)

$(LABEL_STAMP): requirements/label.lock requirements/label-source-builds.txt pyproject.toml | $(UV)
	rm -rf $(LABEL_VENV)  # made afresh: nothing of an older environment survives (uv's cache makes it cheap)
	$(UV) venv --quiet --python $(PYTHON) $(LABEL_VENV)
	$(UV_INSTALL) $(LABEL_PY) -r requirements/label.lock
	SAM2_BUILD_CUDA=0 $(UV_INSTALL) $(LABEL_PY) --no-build-isolation -r requirements/label-source-builds.txt
	$(UV_INSTALL) $(LABEL_PY) -e .
	$(UV) pip check --quiet --python $(LABEL_PY)
	@touch $@

# The MONAI Deploy SDK (holoscan, tritonclient, highdicom; protobuf<7): its own environment.
deploy-env: $(DEPLOY_STAMP)

$(DEPLOY_STAMP): requirements/deploy.lock pyproject.toml | $(UV)
	rm -rf $(DEPLOY_VENV)
	$(UV) venv --quiet --python $(PYTHON) $(DEPLOY_VENV)
	$(UV_INSTALL) $(DEPLOY_PY) -r requirements/deploy.lock
	$(UV_INSTALL) $(DEPLOY_PY) -e .
	$(UV) pip check --quiet --python $(DEPLOY_PY)
	@touch $@

# Re-resolve the three lock files after changing constraints.txt, pyproject.toml or requirements/*.in (CPython
# $(LOCK_PYTHON), Linux x86_64: what CI runs). Label: the core pins but numpy, pydicom, jsonschema (label.in says why).
UV_COMPILE = $(UV) pip compile --quiet --python-version $(LOCK_PYTHON) --python-platform x86_64-manylinux_2_35 \
	--no-annotate --no-emit-package sdmad --custom-compile-command "make lock"
lock: | $(UV)
	$(UV_COMPILE) pyproject.toml --extra dev -c constraints.txt -o requirements/core.lock
	grep -v -E '^(numpy|pydicom|jsonschema)==' constraints.txt > requirements/label.constraints
	$(UV_COMPILE) requirements/label.in -c requirements/label.constraints --override requirements/label.overrides \
		--no-emit-package sam2 -o requirements/label.lock
	rm requirements/label.constraints
	$(UV_COMPILE) requirements/deploy.in -c constraints.txt -o requirements/deploy.lock

# phantom data (made once) -> tiny CLIP pretrained on phantom captions (once, ~2 min) -> training -> evaluating
# (trained and zero-shot) -> inference; offline, CPU.
demo: setup
	$(PY) scripts/demo.py

# Speed and memory on the device found (ViT-L-14-336, random weights): docs/benchmarks.md.
benchmark: setup
	$(PY) scripts/benchmark.py --out runs/benchmark/benchmark.json

# The phantom benchmark of the README: 3 seeds, trained vs zero-shot, mean ± std (runs/phantom_benchmark/summary.md).
benchmark-phantom: setup
	$(PY) scripts/multi_seed.py --seeds 0 1 2 --run-name phantom_benchmark --demo

# ruff: the rules in pyproject.toml ([tool.ruff.lint]: E, F, I, B, UP) and its formatting (`ruff format` fixes it)
lint: setup
	$(VENV)/bin/ruff check bundle scripts tests
	$(VENV)/bin/ruff format --check bundle scripts tests

test: lint label-env deploy-env
	$(PY) -m pytest
	$(LABEL_PY) -m pytest tests/label
	$(BIG_STACK) $(DEPLOY_PY) -m pytest tests/deploy

# MONAI Label on 127.0.0.1 over phantom studies (the demo's model when it exists, else zero-shot).
label-server: label-env
	$(PY) scripts/monailabel_app/make_studies.py --out data/label_studies
	$(LABEL_PY) scripts/monailabel_app/serve.py --studies data/label_studies --port $(LABEL_PORT)

# The Deploy app on a phantom DICOM study (MR series + spectroscopy series) with the demo's model (made first if
# missing): findings JSON, a DICOM SEG (present categories) and a DICOM SR referencing it in runs/deploy/, and a
# picture of the SEG read back (runs/deploy/seg_frame.png).
deploy-run: deploy-env
	@test -f $(DEMO_MODEL) || $(MAKE) demo
	$(PY) scripts/deploy_app/make_model_folder.py --checkpoint $(DEMO_MODEL) --model-name sdmad-tiny \
		--pretrained models/sdmad-tiny-phantom.pt --out models/deploy_demo
	$(PY) scripts/deploy_app/make_study.py --out data/deploy_study
	$(BIG_STACK) time -p $(DEPLOY_PY) scripts/deploy_app/app.py -i data/deploy_study -o runs/deploy -m models/deploy_demo
	$(BIG_STACK) $(DEPLOY_PY) scripts/deploy_app/show_findings.py runs/deploy --study data/deploy_study \
		--picture runs/deploy/seg_frame.png

test-slow: setup
	$(PY) -m pytest -m slow

clean-venv:
	rm -rf $(VENV) $(LABEL_VENV) $(DEPLOY_VENV)
