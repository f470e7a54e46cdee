# Thin entry points; each target calls the real tool. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PYTHONPATH := $(CURDIR)/hack
# Every process a run starts inherits this id, so `testbed leftovers` can find strays.
export CALLSTORAGE_TESTBED_RUN ?= $(shell date +%s%N)

.PHONY: help deps lock lock-upgrade testbed demo demo-cluster test lint bench bench-media clean image

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

# The development and test environment is locked: pyproject.toml keeps ranges for people
# who install the package, `make deps` installs exactly the hash-pinned versions of the lock,
# and only `make lock` / `make lock-upgrade` move them.
LOCK      := hack/requirements-dev.lock
LOCK_ARGS := --extra test --extra dev --universal --python-version 3.11 --generate-hashes \
             --no-header --quiet -o $(LOCK)
# what installing the package itself needs (no build isolation, so no unpinned download)
LOCK_TOOLS := pip>=25,<27\nhatchling>=1.25,<2\neditables>=0.5,<1\n

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	@touch $@

deps: $(STAMP) ## virtualenv with exactly the locked packages (hack/requirements-dev.lock)

# Azurite (npm) is locked the same way: hack/testbed/azurite/package{,-lock}.json, `npm ci`.
NPM_LOCK := cd hack/testbed/azurite && npm install --package-lock-only --no-audit --no-fund \
            --omit-lockfile-registry-resolved --loglevel=error

lock: deps ## after editing pyproject.toml's dependencies or Azurite's version: re-lock, keeping pins
	printf '$(LOCK_TOOLS)' | $(BIN)/uv pip compile pyproject.toml - $(LOCK_ARGS)
	$(NPM_LOCK)

lock-upgrade: deps ## move every pin to the newest version pyproject.toml (and package.json) allow
	printf '$(LOCK_TOOLS)' | $(BIN)/uv pip compile pyproject.toml - $(LOCK_ARGS) --upgrade
	rm -f hack/testbed/azurite/package-lock.json && $(NPM_LOCK)

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
