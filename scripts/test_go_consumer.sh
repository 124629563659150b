#!/usr/bin/env bash
# A Go module outside the repository uses github.com/lorakit/lorakit/go the way a user would: `make install-lib`
# into a temporary prefix, then scripts/go_consumer built in a temporary module (require + replace to this
# checkout) and run on a fixture model, linked four ways:
#   static     -tags lorakit_static, pkg-config lorakit-static: no liblorakit.so needed at run time
#   shared     pkg-config lorakit: liblorakit.so.N found through LD_LIBRARY_PATH
#   vendored   `go mod vendor` + `go build -mod=vendor`, shared, found through an rpath
#   cgoflags   -tags lorakit_nopkgconfig with CGO_CFLAGS/CGO_LDFLAGS only (pkg-config unusable)
# Each program must pass the golden vectors and print the label the Python binding computes for the same text.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIXTURES=${LORAKIT_FIXTURES:-$ROOT/.fixtures}
MODEL=$FIXTURES/tiny_bert_lora_a
TEXT="my card was declined"
PY=${PY:-$ROOT/.venv/bin/python}

fail() { echo "test_go_consumer: FAIL: $*" >&2; exit 1; }
[ -f "$MODEL/lorakit.json" ] || fail "fixture $MODEL missing (run make fixtures)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lorakit-go-consumer.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PREFIX=$WORK/prefix
APP=$WORK/app

make -s -C "$ROOT" install-lib PREFIX="$PREFIX" >/dev/null
# Only the installed library: nothing of the repository's in-tree build may be found.
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
unset PKG_CONFIG_LIBDIR CGO_LDFLAGS
export CGO_ENABLED=1
# Go's build cache key leaves out pkg-config's output; naming the prefix here keeps a lorakit package compiled
# for another prefix (an earlier run, or the in-tree build) from being reused.
export CGO_CFLAGS="-O2 -g -I$PREFIX/include"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
[ "$(pkg-config --modversion lorakit)" = "$version" ] || fail "lorakit.pc version is not $version"
[ "$(pkg-config --variable=prefix lorakit)" = "$PREFIX" ] || fail "lorakit.pc prefix is not $PREFIX"
static_libs=$(pkg-config --static --libs lorakit)
for lib in -llorakit -lm -ldl -lpthread; do
    [[ " $static_libs " == *" $lib "* ]] || fail "pkg-config --static --libs lorakit lacks $lib: $static_libs"
done
[ "$(readelf -d "$PREFIX/lib/liblorakit.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')" = \
  "liblorakit.so.${version%%.*}" ] || fail "liblorakit.so has no soname liblorakit.so.${version%%.*}"

mkdir -p "$APP"
cp "$ROOT/scripts/go_consumer/main.go" "$APP/"
cat > "$APP/go.mod" <<EOF
module example.com/lorakit-consumer

go 1.26

require github.com/lorakit/lorakit/go v0.0.0

replace github.com/lorakit/lorakit/go => $ROOT/go
EOF
# The checksums the repository module already pins, as `go get` would have recorded them.
if [ -f "$ROOT/go/go.sum" ]; then cp "$ROOT/go/go.sum" "$APP/go.sum"; fi
(cd "$APP" && go mod tidy)

expected=$("$PY" -c 'import sys
from lorakit.native import Model
res = Model.load(sys.argv[1], merged=True).classify([sys.argv[2]], top_k=1)
print(f"{sys.argv[2]}\t{res.labels[0][0]}\t{res.scores[0][0]:.4f}")' "$MODEL" "$TEXT")

# check NAME BINARY [ENV...]: run the program, compare its output, report how it links liblorakit.
check() {
    local name=$1 bin=$2; shift 2
    local out
    out=$(env "$@" "$bin" "$MODEL" "$TEXT") || fail "$name: $bin exited $?"
    [ "$(sed -n 1p <<<"$out")" = "lorakit $version" ] || fail "$name: version line: $out"
    [[ "$(sed -n 2p <<<"$out")" == "golden ok: "* ]] || fail "$name: golden line: $out"
    [ "$(sed -n 3p <<<"$out")" = "$expected" ] || fail "$name: got '$(sed -n 3p <<<"$out")', Python gives '$expected'"
    echo "$name: $(sed -n 3p <<<"$out" | tr '\t' ' ') ($(sed -n 2p <<<"$out"))"
}
needs_shared() { readelf -d "$1" | grep -q "NEEDED.*\[liblorakit\.so\.${version%%.*}\]"; }
resolved_from() { env "${@:2}" ldd "$1" | awk '/liblorakit/ {print $3}'; }

cd "$APP"
go build -tags lorakit_static -o static .
needs_shared static && fail "static: the binary needs liblorakit.so"
check static ./static

go build -o shared .
needs_shared shared || fail "shared: the binary does not need liblorakit.so.${version%%.*}"
[ "$(resolved_from shared LD_LIBRARY_PATH="$PREFIX/lib")" = "$PREFIX/lib/liblorakit.so.${version%%.*}" ] ||
    fail "shared: liblorakit does not resolve to the installed one"
check shared ./shared LD_LIBRARY_PATH="$PREFIX/lib"

go mod vendor
[ -f vendor/github.com/lorakit/lorakit/go/lorakit/cgo.go ] || fail "vendored: lorakit package not vendored"
CGO_LDFLAGS="-Wl,-rpath,$PREFIX/lib" go build -mod=vendor -o vendored .
[ "$(resolved_from vendored)" = "$PREFIX/lib/liblorakit.so.${version%%.*}" ] ||
    fail "vendored: the rpath does not find the installed liblorakit"
check vendored ./vendored
rm -rf vendor

PKG_CONFIG=false CGO_LDFLAGS="$PREFIX/lib/liblorakit.a -lm -ldl -lpthread" \
    go build -tags lorakit_nopkgconfig -o cgoflags .
needs_shared cgoflags && fail "cgoflags: the binary needs liblorakit.so"
check cgoflags ./cgoflags
echo "test_go_consumer: ok (static, shared, vendored, cgoflags)"
