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

.PHONY: setup label-env deploy-env demo lint test test-slow benchmark benchmark-phantom label-server deploy-run clean-venv

setup: $(STAMP)

# Re-installs when the dependency pins change; `pip install -e` keeps bundle/sdmad live for development.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir -c constraints.txt -e ".[dev]"
	@touch $@

# phantom data (made once) -> tiny CLIP pretrained on phantom captions (once, ~2 min) -> training -> evaluating
# (trained and zero-shot) -> inference; offline, CPU.
# MONAI Label needs numpy<2 and pydicom<3: its own environment, reusing the core one's torch/monai/sdmad.
label-env: $(LABEL_STAMP)

$(LABEL_STAMP): $(STAMP) scripts/monailabel_app/requirements.txt
	@test -x $(LABEL_PY) || $(PYTHON) -m venv $(LABEL_VENV)
	$(LABEL_PY) scripts/link_core_venv.py $(VENV)
	$(LABEL_PY) -m pip install --quiet --no-cache-dir --no-deps monailabel==0.8.5
	$(LABEL_PY) -m pip install --quiet --no-cache-dir -r scripts/monailabel_app/requirements.txt
	@touch $@

# The MONAI Deploy SDK (holoscan, tritonclient, highdicom; protobuf<7): its own environment, reusing the core one's
# torch/open_clip/sdmad. The SDK installs into the monai package, so this environment gets its own monai (no deps).
deploy-env: $(DEPLOY_STAMP)

$(DEPLOY_STAMP): $(STAMP) scripts/deploy_app/requirements.txt scripts/deploy_app/own-copies.txt constraints.txt
	@test -x $(DEPLOY_PY) || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_PY) scripts/link_core_venv.py $(VENV)
	$(DEPLOY_PY) -m pip uninstall --quiet --yes setuptools  # the venv's 65.x; own-copies.txt pins the core's
	$(DEPLOY_PY) -m pip install --quiet --no-cache-dir --no-deps --ignore-installed -c constraints.txt monai \
		-r scripts/deploy_app/own-copies.txt
	$(DEPLOY_PY) -m pip install --quiet --no-cache-dir -r scripts/deploy_app/requirements.txt
	@touch $@

demo: setup
	$(PY) scripts/demo.py

# Speed and memory on the device found (ViT-L-14-336, random weights): docs/benchmarks.md.
benchmark: setup
	$(PY) scripts/benchmark.py --out runs/benchmark/benchmark.json

# The phantom benchmark of the README: 3 seeds, trained vs zero-shot, mean ± std (runs/phantom_benchmark/summary.md).
benchmark-phantom: setup
	$(PY) scripts/multi_seed.py --seeds 0 1 2 --run-name phantom_benchmark --demo

# ruff: the rules in pyproject.toml ([tool.ruff.lint]: E, F, I, B, UP)
lint: setup
	$(VENV)/bin/ruff check bundle scripts tests

test: lint label-env deploy-env
	$(PY) -m pytest
	$(LABEL_PY) -m pytest tests/label
	$(BIG_STACK) $(DEPLOY_PY) -m pytest tests/deploy

# MONAI Label on 127.0.0.1 over phantom studies (the demo's model when it exists, else zero-shot).
label-server: label-env
	$(PY) scripts/monailabel_app/make_studies.py --out data/label_studies
	$(LABEL_PY) scripts/monailabel_app/serve.py --studies data/label_studies --port $(LABEL_PORT)

# The Deploy app on a phantom DICOM study (MR series + spectroscopy series) with the demo's model (made first if
# missing): findings JSON and a DICOM SR in runs/deploy/.
deploy-run: deploy-env
	@test -f $(DEMO_MODEL) || $(MAKE) demo
	$(PY) scripts/deploy_app/make_model_folder.py --checkpoint $(DEMO_MODEL) --model-name sdmad-tiny \
		--pretrained models/sdmad-tiny-phantom.pt --out models/deploy_demo
	$(PY) scripts/deploy_app/make_study.py --out data/deploy_study
	$(BIG_STACK) time -p $(DEPLOY_PY) scripts/deploy_app/app.py -i data/deploy_study -o runs/deploy -m models/deploy_demo
	$(PY) scripts/deploy_app/show_findings.py runs/deploy

test-slow: setup
	$(PY) -m pytest -m slow

clean-venv:
	rm -rf $(VENV) $(LABEL_VENV) $(DEPLOY_VENV)
