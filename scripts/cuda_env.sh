#!/usr/bin/env bash
# CUDA toolchain for the `cuda` feature, with no system CUDA toolkit and no GPU: nvcc, headers and libraries come
# from NVIDIA's wheels on PyPI, installed into target/cuda/toolkit (the normal build and .venv stay untouched).
#
#   source scripts/cuda_env.sh          # installs on first use, then exports PATH, CUDA_ROOT, ... in this shell
#   scripts/cuda_env.sh cargo build ... # the same, then runs the command in that environment
#
# CUDA 13.0 is pinned because candle's kernels are PTX that the driver compiles at load time: a driver only loads
# PTX of its own CUDA version or older, and the H100/H200 machines this targets run driver 580 (CUDA 13.0).
# CUDA_COMPUTE_CAP (default 90: H100/H200) names the GPU to compile for, since no GPU is here to ask.
# LORAKIT_CUDA_TOOLKIT moves the install (default target/cuda/toolkit).

_lk_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LORAKIT_CUDA_TOOLKIT="${LORAKIT_CUDA_TOOLKIT:-$_lk_root/target/cuda/toolkit}"
# Wheel pins: one CUDA release (13.0 update 2); curand keeps its own numbering.
_lk_wheels=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cublas==13.0.2.14
    nvidia-curand==10.4.0.35
)

_lk_install() {
    local stamp="$LORAKIT_CUDA_TOOLKIT/.wheels-stamp" want
    want="$(printf '%s\n' "${_lk_wheels[@]}")"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    local py="$_lk_root/.venv/bin/python"
    [[ -x "$py" ]] || py=python3
    echo "cuda_env: installing ${#_lk_wheels[@]} NVIDIA wheels into $LORAKIT_CUDA_TOOLKIT" >&2
    rm -rf "$LORAKIT_CUDA_TOOLKIT/site"
    "$py" -m pip install -q --no-deps --no-compile --only-binary=:all: --target "$LORAKIT_CUDA_TOOLKIT/site" \
        "${_lk_wheels[@]}"
    local cuda="$LORAKIT_CUDA_TOOLKIT/site/nvidia/cu13"
    # The linker's -lNAME wants libNAME.so; the wheels ship only the versioned sonames.
    local lib so
    for lib in cudart cublas cublasLt curand nvrtc; do
        so="$(cd "$cuda/lib" && ls "lib$lib.so."* | sort | head -n 1)"
        ln -sf "$so" "$cuda/lib/lib$lib.so"
    done
    _lk_cuda_stub "$cuda"
    printf '%s\n' "$want" >"$stamp"
}

# candle-core links cudarc with `dynamic-linking`, so the link needs -lcuda, the driver library, which no wheel
# ships (cudarc's `dynamic-loading` can't be chosen: candle's feature excludes it). Like the toolkit's own
# lib/stubs/libcuda.so, this stub only satisfies the linker: it carries the driver's soname, libcuda.so.1, so the
# program loads the real driver on a GPU machine. Its symbols are the driver functions cudarc declares.
_lk_cuda_stub() {
    local cuda="$1" version sys
    version="$(sed -n '/^name = "cudarc"$/{n;s/^version = "\(.*\)"/\1/p}' "$_lk_root/Cargo.lock")"
    (cd "$_lk_root" && cargo fetch -q)
    sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$version"/src/driver/sys/mod.rs | head -n 1)"
    mkdir -p "$cuda/lib/stubs"
    grep -oE '^ +fn cu[A-Za-z0-9_]+\(' "$sys" | sed -E 's/^ +fn ([A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u \
        >"$cuda/lib/stubs/libcuda_stub.c"
    cc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$cuda/lib/stubs/libcuda_stub.c"
}

# In a subshell with errexit, so that sourcing this file leaves the caller's shell options alone.
if ! (set -euo pipefail; _lk_install); then
    echo "cuda_env: installing the CUDA wheels failed" >&2
    return 1 2>/dev/null || exit 1
fi
CUDA_ROOT="$LORAKIT_CUDA_TOOLKIT/site/nvidia/cu13"
export CUDA_ROOT CUDA_PATH="$CUDA_ROOT" CUDA_HOME="$CUDA_ROOT"
export PATH="$CUDA_ROOT/bin:$PATH"
export LD_LIBRARY_PATH="$CUDA_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# cudarc reads the toolkit version from `nvcc --version`; naming it keeps a stray nvcc on PATH from deciding.
export CUDARC_CUDA_VERSION=13000
# nvcc in the kernel build scripts runs on a thread pool of its own: keep it to the cargo job count.
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-${CARGO_BUILD_JOBS:-1}}"

if [[ "${BASH_SOURCE[0]}" == "$0" && $# -gt 0 ]]; then
    exec "$@"
fi
