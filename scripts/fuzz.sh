#!/usr/bin/env bash
# Runs every fuzz target for longer than `cargo test` does: the loader fuzzers of lorakit-core (proptest, each
# target SECONDS with fresh random seeds) and the Go fuzz targets (`go test -fuzz`, each SECONDS).
# Usage: scripts/fuzz.sh [SECONDS]   (default 60 per target; LORAKIT_FIXTURES defaults to ./.fixtures)
set -euo pipefail
seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
export LORAKIT_FIXTURES="${LORAKIT_FIXTURES:-$root/.fixtures}"
export PKG_CONFIG_PATH="$root/target/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cd "$root"

echo "== lorakit-core loaders: ${seconds}s per target"
LORAKIT_FUZZ_SECONDS="$seconds" cargo test --release -q -p lorakit-core --test fuzz_loaders -- \
    --test-threads 1 --nocapture 2>&1 | grep -E '^fuzz |test result|panicked|FAILED|seed'

# Go fuzz targets: every `func FuzzX(` of these packages, one at a time (go test -fuzz takes one target); new
# crashers land in go/<pkg>/testdata/fuzz/<Target>/ and run as regression inputs in every `go test`.
status=0
for pkg in router lorakit discovery; do
    dir="go/$pkg"
    [ -d "$dir" ] || continue
    targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
    for target in $targets; do
        echo "== go/$pkg $target: ${seconds}s"
        (cd go && CGO_ENABLED=1 go test "./$pkg" -run '^$' -fuzz "^$target\$" -fuzztime "${seconds}s" -parallel 2) ||
            status=1
    done
done
exit "$status"
