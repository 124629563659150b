# lorakit: train LoRA text classifiers in Python, serve them natively from Rust, Python and Go.
SHELL := /bin/bash
PY_VERSION ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export CARGO_TARGET_DIR := $(CURDIR)/target
export LORAKIT_FIXTURES := $(CURDIR)/.fixtures
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
NATIVE_STAMP := $(VENV)/.native-stamp
RUST_SOURCES := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml Cargo.lock

.DEFAULT_GOAL := help
.PHONY: help setup native ffi fixtures demo test test-python test-rust test-go header-check lint bench clean
.PHONY: test-wheel

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.deps-stamp: pyproject.toml
	@test -x $(PY) || $(PY_VERSION) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin==1.16.0"
	touch $@

$(NATIVE_STAMP): $(VENV)/.deps-stamp $(RUST_SOURCES) $(shell find python -name '*.py' -o -name '*.pyi')
	$(VENV)/bin/maturin develop --release --extras train,onnx,demo,dev -q
	touch $@

setup: $(NATIVE_STAMP) ## Create .venv, install Python deps and build the native extension (idempotent)

native: $(NATIVE_STAMP) ## Build the Rust core into the Python package (maturin develop --release)

ffi: ## Build the C ABI static library (target/release/liblorakit.a) and header
	cargo build --release -p lorakit-ffi

fixtures: setup ## Generate tiny random models + golden vectors used by cargo and go tests
	$(PY) scripts/make_fixtures.py $(LORAKIT_FIXTURES) --with-minilm

demo: setup ffi ## Main job: train on the embedded default, export, run natively from Python and Go, print parity + metrics
	$(PY) scripts/demo.py

test: lint fixtures ffi test-python test-rust test-go test-wheel header-check ## Install everything, lint, run every test suite

test-python: setup
	$(PY) -m pytest -q

test-wheel: fixtures ## Build the wheel, install it alone (numpy + native core, no torch) in target/serving-venv, smoke-test it
	scripts/test_wheel.sh

test-rust: fixtures
	cargo test --release --workspace --exclude lorakit-python

test-go: ffi fixtures
	cd go && CGO_ENABLED=1 GOEXPERIMENT=cgocheck2 go test -race -count=1 ./...

header-check: ffi ## Fail when the checked-in C header is stale
	git diff --exit-code -- rust/lorakit-ffi/include/lorakit.h

# Every check runs even when an earlier one fails, so one run lists all findings; the target fails if any did.
lint: setup ## Static checks: clippy, rustfmt, ruff, mypy, stubtest of _native.pyi, go vet, gofmt
	@failed=""; \
	run() { echo "+ $$*"; "$$@" || failed="$$failed\n  $$*"; }; \
	run cargo clippy --workspace --all-targets -- -D warnings; \
	run cargo fmt --all --check; \
	run $(VENV)/bin/ruff check python tests scripts; \
	run $(PY) -m mypy python/lorakit; \
	run $(PY) -m mypy.stubtest lorakit._native; \
	run go -C go vet ./...; \
	run sh -c 'files=$$(gofmt -l go); test -z "$$files" || { echo "gofmt -l (run gofmt -w on these):"; echo "$$files"; false; }'; \
	if [ -n "$$failed" ]; then printf "lint failed:$$failed\n"; exit 1; fi

bench: setup ffi ## Inference benchmark: native vs torch vs ONNX Runtime (writes bench.json)
	$(PY) scripts/bench_inference.py --json bench.json

clean: ## Remove build outputs and generated fixtures
	rm -rf target .fixtures $(VENV)
