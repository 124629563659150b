#!/usr/bin/env bash
# Leak check of the C ABI: builds scripts/abi_leak_check.c against target/release/liblorakit.a and runs its
# create / use / free loop (every call, error paths included) under valgrind. Fails on any definitely or
# indirectly lost byte, on any memory error, and on any unexpected status.
# A self-test first leaks one result on purpose and must be caught, so the check is known to be able to fail.
# Usage: scripts/abi_leak_check.sh [ITERATIONS]   (default 3; needs `make ffi fixtures` and valgrind)
set -euo pipefail
iterations="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
fixtures="${LORAKIT_FIXTURES:-$root/.fixtures}"
out="$root/target/abi_leak_check"
command -v valgrind >/dev/null || { echo "abi_leak_check: valgrind is not installed" >&2; exit 2; }
mkdir -p "$out"
cc -std=c11 -O1 -g -Wall -Wextra -Werror -I "$root/rust/lorakit-ffi/include" "$root/scripts/abi_leak_check.c" \
    "$root/target/release/liblorakit.a" -lm -ldl -lpthread -o "$out/abi_leak_check"
# Still-reachable blocks (the process-wide compute pool, lazily built statics) are not leaks: only definite and
# indirect losses count as errors.
check() {
    valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
        --error-exitcode=1 --log-file="$out/valgrind.log" "$out/abi_leak_check" "$fixtures" "$1"
}
if ABI_LEAK_CHECK_LEAK=1 check 1 >/dev/null || ! grep -qE "definitely lost: [1-9]" "$out/valgrind.log"; then
    echo "abi_leak_check: the self-test leaked a result and valgrind did not report it" >&2
    exit 1
fi
status=0
check "$iterations" || status=$?
grep -E "definitely lost|indirectly lost|still reachable|ERROR SUMMARY" "$out/valgrind.log" | sed 's/^==[0-9]*== *//'
exit "$status"
