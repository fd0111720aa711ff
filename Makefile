# ssl-attn — the two commands: `make demo` and `make test`. Both bootstrap .venv from a clean clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# PyTorch: the CUDA build that runs on the CPU here (see README, "Install").
TORCH  := torch==2.14.1 torchvision==0.29.1
DATA   ?= data/synthetic
STORE  ?= data/stores/demo.zarr
PORT   ?= 5006
# `make serve PROCS=2 THREADS=4`: worker processes and event threads per process (README,
# "Serving the dashboard"); SERVE_ARGS passes more `panel serve` options (proxy, prefix).
PROCS  ?= 1
THREADS ?= 0
SERVE_ARGS ?=

.PHONY: setup test lint demo demo-data serve clean-data bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

# Everything the dashboard needs, on the synthetic default data.
demo-data: setup
	$(BIN)/ssl-attn demo --data $(DATA) --store $(STORE)

demo: demo-data serve

serve: setup
	$(BIN)/panel serve dashboards/explorer.py --port $(PORT) --num-procs $(PROCS) \
		$(if $(filter-out 0,$(THREADS)),--num-threads $(THREADS)) $(SERVE_ARGS) \
		--args --store $(STORE)

bench: setup
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean-data:
	rm -rf data/synthetic data/stores
