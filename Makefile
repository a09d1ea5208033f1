# gnnspec: two commands on a fresh machine: `make train` and `make test`.
# Both create .venv when missing and install into it. GPU users override TORCH, e.g.
#   make train TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= simulation,measured,xas,search,bench,dev
WORKERS ?= 2
PY := $(VENV)/bin/python
GNNSPEC := $(VENV)/bin/gnnspec
STAMP := $(VENV)/.installed
DATA ?= datasets/nmc_feff10_fast
CONFIG ?=
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install test test-all lint train data data-info bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(PY) -m ruff check gnnspec tests

## default test run: CPU, under ~15 minutes on 2 cores (slow and gpu tests left out)
test: install lint
	$(PY) -m pytest -m "not slow and not gpu" -q

test-all: install
	$(PY) -m pytest -q

## train on the shipped dataset: gpu.yaml with CUDA, cpu.yaml (about 55 min on 2 cores) otherwise
train: install
	@CFG="$(CONFIG)"; \
	if [ -z "$$CFG" ]; then CFG=$$($(PY) -c "import torch; print('train_configs/gpu.yaml' if torch.cuda.is_available() else 'train_configs/cpu.yaml')"); fi; \
	echo "gnnspec train $$CFG"; $(GNNSPEC) train $$CFG

## (re)build the shipped dataset from its recipe; resumes where it stopped and reruns the
## screened Li K runs stored without their core-hole screening (--recheck-screening)
data: install
	$(GNNSPEC) data build datasets/nmc_feff10_fast.yaml --out $(DATA) --workers $(WORKERS) --recheck-screening
	$(GNNSPEC) data compact $(DATA)
	$(GNNSPEC) data info $(DATA)

data-info: install
	$(GNNSPEC) data info $(DATA)

## benchmarks: writes benchmarks/report.md (QUICK=1 for a run under 10 minutes)
bench: install
	$(PY) -m gnnspec.bench $(if $(QUICK),--quick,)

clean:
	rm -rf runs .pytest_cache .ruff_cache
