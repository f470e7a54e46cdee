# Thin entry points; each target calls the real tool. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PYTHONPATH := $(CURDIR)/hack
# Every process a run starts inherits this id, so `testbed leftovers` can find strays.
export CALLSTORAGE_TESTBED_RUN ?= $(shell date +%s%N)

.PHONY: help deps testbed demo demo-cluster test lint bench bench-media clean image

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25,<27"
	$(BIN)/pip install --quiet -e ".[test,dev]"
	@touch $@

deps: $(STAMP) ## virtualenv with the package and its test/dev dependencies

testbed: deps ## find or build the Go tools (kube-apiserver, kubelet, etcd, helm, ...); Azurite, node packages, the image
	$(BIN)/python -m testbed prepare

demo: testbed ## local control plane + S3 emulator + operator + samples, until Ctrl-C
	$(BIN)/python -m testbed demo

demo-cluster: testbed ## the same on a real node: image built here, `helm install`, two Pods
	$(BIN)/python -m testbed demo --node

test: testbed ## lint, type-check and run every test against the real test bed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest
	$(BIN)/python -m testbed leftovers

image: deps ## build the operator image from the Dockerfile (no registry); prints its id
	$(BIN)/python -m testbed image

lint: deps ## ruff and mypy only
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: deps ## benchmarks, one JSON document (SCENARIO=default|distinct|restart|churn|all N=... RUNS=...)
	@$(BIN)/python -m testbed prepare >&2
	@$(if $(SCENARIO),BENCH_SCENARIOS=$(SCENARIO)) $(if $(N),BENCH_SIZES=$(N)) \
	  $(if $(RUNS),BENCH_RUNS=$(RUNS)) $(BIN)/python -m bench

bench-media: deps ## media upload benchmark (builds MinIO once; BENCH_MEDIA_* to change)
	@$(BIN)/python -m bench.media

clean: ## remove the virtualenv (built binaries stay cached in ~/.cache/callstorage)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
