#!/usr/bin/env bash
# Runs every Go fuzz target for a bounded total time: fuzz_go.sh [TOTAL_SECONDS] (default 30, split evenly
# between the targets, at least 1 s each). New crashers land in go/<pkg>/testdata/fuzz/<Target>/ and from
# then on run as regression inputs in every `go test`. Needs `make ffi fixtures` (the fixtures seed them).
set -euo pipefail
total=${1:-30}
if ! [[ $total =~ ^[0-9]+$ ]] || (( total < 1 )); then
  echo "usage: $0 [TOTAL_SECONDS]" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
targets=(
  "./router FuzzHTTPDecoding"
  "./lorakit FuzzReadGolden"
  "./discovery FuzzManifest"
)
each=$(( total / ${#targets[@]} ))
(( each >= 1 )) || each=1
export CGO_ENABLED=1 PKG_CONFIG_PATH="$repo/target/pkgconfig" LORAKIT_FIXTURES=${LORAKIT_FIXTURES:-$repo/.fixtures}
cd "$repo/go"
status=0
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "== $name ($pkg) for ${each}s"
  # -parallel 2: the machines this runs on are small. -fuzzminimizetime 50x: minimising each new input for
  # the default 60 s would spend a short run on a handful of inputs (the targets that touch files are slow).
  if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="${each}s" -fuzzminimizetime=50x -parallel=2 "$pkg"; then
    status=1
  fi
done
exit $status
