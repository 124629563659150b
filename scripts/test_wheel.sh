#!/usr/bin/env bash
# Builds the lorakit wheel and smoke-tests the serving install (`pip install lorakit`: numpy + the native core,
# no torch) in a fresh virtual environment: version, predict (texts and stdin), verify --backends native, the
# Python API, and the one-line errors of commands that need the [train] extra.
#
# Usage: scripts/test_wheel.sh   (from the repository root; LORAKIT_FIXTURES as `make fixtures` writes them)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FIXTURES="${LORAKIT_FIXTURES:-$ROOT/.fixtures}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
MATURIN="${MATURIN:-$ROOT/.venv/bin/maturin}"
WHEELS="$CARGO_TARGET_DIR/serving-wheel"
VENV="$CARGO_TARGET_DIR/serving-venv"

fail() { echo "test_wheel: FAIL: $*" >&2; exit 1; }

rm -rf "$WHEELS"
# Same target dir, profile and interpreter as `maturin develop --release` (a different interpreter would rebuild
# pyo3 and the binding each time one or the other runs): only packaging is new work.
(cd "$ROOT" && "$MATURIN" build --release -q --interpreter "$ROOT/.venv/bin/python" --out "$WHEELS")
wheel=$(ls "$WHEELS"/lorakit-*.whl)
"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$wheel"

# Outside the repository, so `import lorakit` is the installed wheel, never ./python.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
lk="$VENV/bin/lorakit"
py="$VENV/bin/python"

for module in torch transformers sklearn scipy safetensors; do
    if "$py" -c "import $module" 2>/dev/null; then fail "$module is importable in the serving install"; fi
done

version=$("$lk" --version)
[[ "$version" =~ ^lorakit\ [0-9.]+\ \(native\ core\ [0-9.]+\)$ ]] || fail "--version printed: $version"

"$lk" predict "$FIXTURES/tiny_bert_lora_a" --text "great lovely day" --text "" --json > predict.json
"$py" - predict.json <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
assert [r["text"] for r in results] == ["great lovely day", ""], results
for r in results:
    assert r["label"] in ("negative", "neutral", "positive"), r
    assert abs(sum(t["probability"] for t in r["top"]) - 1.0) < 1e-5, r
EOF

printf '{"text": "Ana Lopez lives in Oslo"}\n{"text": "no names here"}\n' \
    | "$lk" predict "$FIXTURES/tiny_bert_token_lora" --input - --input-format jsonl --json > entities.json
"$py" -c "import json,sys; r=json.load(open('entities.json')); assert len(r)==2 and all('entities' in x for x in r), r"

"$lk" verify "$FIXTURES/tiny_bert_lora_a" --backends native > verify.txt 2>/dev/null \
    || fail "verify --backends native: $(cat verify.txt)"
grep -q "native-runtime" verify.txt && grep -q "^PASS$" verify.txt || fail "verify report: $(cat verify.txt)"
"$lk" verify "$FIXTURES/tiny_bert_embed_lora" --json 2>/dev/null > verify.json || fail "verify (default backends)"
"$py" -c "
import json; r = json.load(open('verify.json'))
assert r['ok'] is True and r['backends']['torch-merged']['not_run'], r
assert r['backends']['native-merged']['ok'] is True, r"

"$py" - "$FIXTURES" <<'EOF'
import sys
from lorakit.native import Model
model = Model.load(f"{sys.argv[1]}/tiny_bert_lora_a", merged=True)
result = model.classify(["great lovely day", "awful"], top_k=2)
assert len(result) == 2 and result.probabilities.shape == (2, 3), result
assert all(label in model.labels for row in result.labels for label in row)
assert "torch" not in sys.modules and "transformers" not in sys.modules, "the native API imported torch"
EOF

# Without numpy, the extension must fail to import with an ImportError (never a Rust panic).
"$py" -c "
import sys; sys.modules['numpy'] = None
try:
    import lorakit._native
except ImportError as exc:
    assert 'numpy' in str(exc), exc
else:
    raise SystemExit('lorakit._native imported without numpy')"

for command in "train --data d.csv --output out" "eval $FIXTURES/tiny_bert_lora_a --data d.csv" \
               "export ckpt --output out" "predict $FIXTURES/tiny_bert_lora_a --text hi --backend torch"; do
    set +e
    # shellcheck disable=SC2086
    "$lk" $command > out.txt 2> err.txt
    code=$?
    set -e
    [[ $code == 2 ]] || fail "lorakit $command: exit $code, expected 2"
    [[ $(wc -l < err.txt) == 1 ]] || fail "lorakit $command: stderr is not one line: $(cat err.txt)"
    grep -q "^lorakit ${command%% *}.* needs the training extra.*: pip install 'lorakit\[train\]'" err.txt \
        || fail "lorakit $command: $(cat err.txt)"
    [[ ! -e out ]] || fail "lorakit $command wrote output"
done

echo "test_wheel: ok ($(basename "$wheel"))"
echo "serving venv: $(du -sh "$VENV" | cut -f1)  training venv (.venv): $(du -sh "$ROOT/.venv" | cut -f1)"
