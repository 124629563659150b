# lorakit: train LoRA text classifiers in Python, serve them natively from Rust, Python and Go.
SHELL := /bin/bash
PY_VERSION ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export CARGO_TARGET_DIR := $(CURDIR)/target
export LORAKIT_FIXTURES := $(CURDIR)/.fixtures
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# The wheels (torch with CUDA libraries) are GBs: not a second copy in pip's cache.
export PIP_NO_CACHE_DIR := 1
NATIVE_STAMP := $(VENV)/.native-stamp
RUST_SOURCES := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml Cargo.lock
# The C library for Go: `make ffi` writes target/pkgconfig/lorakit{,-static}.pc for the in-tree (static) build,
# and every go command run from here finds them; `make install-lib PREFIX=...` installs it for other modules.
PREFIX ?= /usr/local
LORAKIT_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
LORAKIT_SOMAJOR := $(firstword $(subst ., ,$(LORAKIT_VERSION)))
IN_TREE_PC := $(CURDIR)/target/pkgconfig
IN_TREE_PCS := $(IN_TREE_PC)/lorakit.pc $(IN_TREE_PC)/lorakit-static.pc
export PKG_CONFIG_PATH := $(IN_TREE_PC)$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH))
# Go's build cache key holds CGO_CFLAGS but not pkg-config's output: naming the in-tree header directory keeps a
# package compiled from this checkout against an installed liblorakit (another module's `replace`) out of here.
export CGO_CFLAGS ?= -O2 -g -I$(CURDIR)/rust/lorakit-ffi/include
INSTALL_PREFIX = $(abspath $(PREFIX))
INSTALL_LIBDIR = $(DESTDIR)$(INSTALL_PREFIX)/lib
# $(call render_pc,TEMPLATE,PREFIX,LIBDIR,INCLUDEDIR)
render_pc = sed -e 's|@PREFIX@|$(2)|g' -e 's|@LIBDIR@|$(3)|g' -e 's|@INCLUDEDIR@|$(4)|g' \
	-e 's|@VERSION@|$(LORAKIT_VERSION)|g' $(1)

.DEFAULT_GOAL := help
.PHONY: help setup native ffi fixtures demo test test-python test-rust test-go header-check lint bench clean
.PHONY: install-lib test-go-consumer test-abi-leaks fuzz
.PHONY: test-wheel
.PHONY: cuda-build

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.deps-stamp: pyproject.toml
	@test -x $(PY) || $(PY_VERSION) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin==1.16.0"
	touch $@

$(NATIVE_STAMP): $(VENV)/.deps-stamp $(RUST_SOURCES) $(shell find python -name '*.py' -o -name '*.pyi')
	$(VENV)/bin/maturin develop --release --extras train,generative,onnx,demo,dev,docs -q
	touch $@

setup: $(NATIVE_STAMP) ## Create .venv, install Python deps and build the native extension (idempotent)

native: $(NATIVE_STAMP) ## Build the Rust core into the Python package (maturin develop --release)

ffi: $(IN_TREE_PCS) ## Build the C ABI (target/release/liblorakit.a and .so) and header
	cargo build --release -p lorakit-ffi

# In the tree both names link the static archive, so tests and `go run` need no LD_LIBRARY_PATH.
$(IN_TREE_PCS): packaging/lorakit-static.pc.in Cargo.toml
	@mkdir -p $(@D)
	$(call render_pc,$<,$(CURDIR),$(CURDIR)/target/release,$(CURDIR)/rust/lorakit-ffi/include) > $@

install-lib: ffi ## Install liblorakit.{a,so}, lorakit.h, lorakit{,-static}.pc under PREFIX (/usr/local)
	install -d $(INSTALL_LIBDIR)/pkgconfig $(DESTDIR)$(INSTALL_PREFIX)/include
	install -m 644 target/release/liblorakit.a $(INSTALL_LIBDIR)/liblorakit.a
	install -m 755 target/release/liblorakit.so $(INSTALL_LIBDIR)/liblorakit.so.$(LORAKIT_VERSION)
	ln -sf liblorakit.so.$(LORAKIT_VERSION) $(INSTALL_LIBDIR)/liblorakit.so.$(LORAKIT_SOMAJOR)
	ln -sf liblorakit.so.$(LORAKIT_SOMAJOR) $(INSTALL_LIBDIR)/liblorakit.so
	install -m 644 rust/lorakit-ffi/include/lorakit.h $(DESTDIR)$(INSTALL_PREFIX)/include/lorakit.h
	for pc in lorakit lorakit-static; do \
		$(call render_pc,packaging/$$pc.pc.in,$(INSTALL_PREFIX),$${prefix}/lib,$${prefix}/include) \
			> $(INSTALL_LIBDIR)/pkgconfig/$$pc.pc; \
	done

fixtures: setup ## Generate tiny random models + golden vectors used by cargo and go tests
	$(PY) scripts/make_fixtures.py $(LORAKIT_FIXTURES) --with-minilm

demo: setup ffi ## Main job: train on the embedded default, export, run natively from Python and Go, print parity + metrics
	$(PY) scripts/demo.py

test: lint fixtures ffi test-python test-rust test-go test-go-consumer test-wheel test-abi-leaks header-check ## Install everything, lint, run every test suite

test-python: setup
	$(PY) -m pytest -q

test-wheel: fixtures ## Build the wheel, install it alone (numpy + native core, no torch) in target/serving-venv, smoke-test it
	scripts/test_wheel.sh

test-rust: fixtures
	cargo test --release --workspace --exclude lorakit-python
	@# The AVX2 and portable kernels are what CPUs without AVX-512 run: the golden and architecture checks on each
	@# (selected from the whole workspace, so the binaries above are reused, not rebuilt with other features).
	for isa in avx2 portable; do \
		LORAKIT_KERNELS=$$isa cargo test --release -q --workspace --exclude lorakit-python --lib --test parity --test architectures --test decoders --test precision || exit 1; \
	done

test-go: ffi fixtures
	cd go && CGO_ENABLED=1 GOEXPERIMENT=cgocheck2 go test -race -count=1 ./...

test-go-consumer: ffi fixtures ## A Go module outside the tree builds on an installed liblorakit
	scripts/test_go_consumer.sh

test-abi-leaks: ffi fixtures ## Create/use/free loop over the C ABI under valgrind: 0 bytes definitely or indirectly lost
	scripts/abi_leak_check.sh 3

fuzz: ffi fixtures ## Run every fuzz target longer (FUZZ_SECONDS per target, default 60): loaders, Go fuzz targets
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

header-check: ffi ## Fail when the checked-in C header is stale
	git diff --exit-code -- rust/lorakit-ffi/include/lorakit.h

# Every check runs even when an earlier one fails, so one run lists all findings; the target fails if any did.
lint: setup $(IN_TREE_PCS) ## Static checks: clippy, rustfmt, ruff, mypy, stubtest of _native.pyi, go vet, gofmt
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

bench: setup ffi ## Inference benchmark, each backend in its own process (bench.json; BENCH_ARGS="--backends ...")
	$(PY) scripts/bench_inference.py --json bench.json $(BENCH_ARGS)

# No GPU or system CUDA needed: scripts/cuda_env.sh installs nvcc and the CUDA 13.0 libraries from NVIDIA's wheels
# under target/cuda/toolkit. CUDA_COMPUTE_CAP (default 90, H100/H200) picks the GPU the kernels are built for.
cuda-build: ## Build the `cuda` feature (core, Python and C ABI crates, gpu_check example) into target/cuda
	CARGO_TARGET_DIR=$(CURDIR)/target/cuda scripts/cuda_env.sh cargo build --release \
		-p lorakit-core -p lorakit-ffi -p lorakit-python --lib --example gpu_check \
		--features lorakit-core/cuda,lorakit-ffi/cuda,lorakit-python/cuda

clean: ## Remove build outputs and generated fixtures
	rm -rf target .fixtures $(VENV)
