// Package lorakittest locates the generated test fixtures and builds tampered copies of model directories,
// for tests that must show a check failing.
package lorakittest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/go/internal/safetensors"
)

// FixturesEnv names the environment variable holding the fixtures root (`make fixtures` writes it).
const FixturesEnv = "LORAKIT_FIXTURES"

// FixtureDir returns LORAKIT_FIXTURES/name. Tests fail (never skip) when the variable is unset or the
// directory is missing, so a run without fixtures cannot pass silently.
func FixtureDir(t testing.TB, name string) string {
	t.Helper()
	root := os.Getenv(FixturesEnv)
	if root == "" {
		t.Fatalf("%s is not set: run `make fixtures` and export %s=<repo>/.fixtures (make test-go does both)",
			FixturesEnv, FixturesEnv)
	}
	dir := filepath.Join(root, name)
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		t.Fatalf("fixture %s missing under %s=%s (run `make fixtures`): %v", name, FixturesEnv, root, err)
	}
	return dir
}

// ArchFixture names the fixture pair of one non-BERT architecture (scripts/arch_fixtures.py): an HF base
// directory and a LoRA model directory trained on it. BERT's are the tiny_bert_* fixtures.
type ArchFixture struct {
	Name string // e.g. "roberta", "modernbert_mean"
	Base string // fixture name "tiny_<name>_base"
	Lora string // fixture name "tiny_<name>_lora"
}

// ArchFixtures lists the per-architecture fixtures from arch_fixtures.json, which `make fixtures` writes;
// tests fail when it is missing or empty.
func ArchFixtures(t testing.TB) []ArchFixture {
	t.Helper()
	path := filepath.Join(filepath.Dir(FixtureDir(t, "tiny_bert_base")), "arch_fixtures.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `make fixtures`)", err)
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil || len(names) == 0 {
		t.Fatalf("%s: want a non-empty JSON list of names (run `make fixtures`): %v", path, err)
	}
	out := make([]ArchFixture, len(names))
	for i, name := range names {
		out[i] = ArchFixture{Name: name, Base: "tiny_" + name + "_base", Lora: "tiny_" + name + "_lora"}
		FixtureDir(t, out[i].Base)
		FixtureDir(t, out[i].Lora)
	}
	return out
}

// TaskFixture is one model directory of a task other than sequence classification (task_fixtures.json,
// which `make fixtures` writes): its fixture name, manifest task and the fixture name of its base.
type TaskFixture struct {
	Name string `json:"name"` // e.g. "tiny_bert_token_lora"
	Task string `json:"task"` // "token_classification" or "embedding"
	Base string `json:"base"` // e.g. "tiny_bert_base"
}

// TaskFixtures lists the task fixtures; tests fail when the list is missing or empty, or a directory it
// names is absent.
func TaskFixtures(t testing.TB) []TaskFixture {
	t.Helper()
	path := filepath.Join(filepath.Dir(FixtureDir(t, "tiny_bert_base")), "task_fixtures.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `make fixtures`)", err)
	}
	var fixtures []TaskFixture
	if err := json.Unmarshal(raw, &fixtures); err != nil || len(fixtures) == 0 {
		t.Fatalf("%s: want a non-empty JSON list of {name, task, base} (run `make fixtures`): %v", path, err)
	}
	for _, f := range fixtures {
		if f.Name == "" || f.Task == "" || f.Base == "" {
			t.Fatalf("%s: incomplete entry %+v", path, f)
		}
		FixtureDir(t, f.Name)
		FixtureDir(t, f.Base)
	}
	return fixtures
}

// CopyModelDir copies a model directory into a fresh temp dir and points its manifest's base.path at the
// original base (absolute), so runtime mode still finds it. lorakit.json is not in its own checksum table.
func CopyModelDir(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	CopyDir(t, src, dst)
	EditManifest(t, dst, func(manifest map[string]any) {
		base, ok := manifest["base"].(map[string]any)
		if !ok {
			return
		}
		if path, ok := base["path"].(string); ok && !filepath.IsAbs(path) {
			base["path"] = filepath.Join(src, path)
		}
	})
	return dst
}

// EditManifest rewrites dir/lorakit.json through edit.
func EditManifest(t testing.TB, dir string, edit func(manifest map[string]any)) {
	t.Helper()
	EditJSON(t, filepath.Join(dir, "lorakit.json"), edit)
}

// EditJSON rewrites the JSON object in path through edit.
func EditJSON(t testing.TB, path string, edit func(object map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var object map[string]any
	if err := json.Unmarshal(raw, &object); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	edit(object)
	out, err := json.MarshalIndent(object, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// RewriteChecksums recomputes the sha256 of every file listed in the manifest, so a deliberate change to a
// file is not caught by the checksum check (and the numeric check is what must fail).
func RewriteChecksums(t testing.TB, dir string) {
	t.Helper()
	EditManifest(t, dir, func(manifest map[string]any) {
		files, _ := manifest["files"].(map[string]any)
		for rel := range files {
			data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			files[rel] = hex.EncodeToString(sum[:])
		}
	})
}

// AddToFloat adds delta to element index of the F32 tensor named tensor in dir/file, in place, and returns
// the original value.
func AddToFloat(t testing.TB, dir, file, tensor string, index int, delta float32) float32 {
	t.Helper()
	path := filepath.Join(dir, file)
	parsed, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := parsed.Tensor(tensor)
	if err != nil {
		t.Fatal(err)
	}
	if info.DType != "F32" || index < 0 || 4*(index+1) > info.End-info.Begin {
		t.Fatalf("%s: cannot address F32 element %d of %s (%s)", path, index, tensor, info.DType)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := info.Begin + 4*index
	old := math.Float32frombits(binary.LittleEndian.Uint32(raw[at:]))
	binary.LittleEndian.PutUint32(raw[at:], math.Float32bits(old+delta))
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return old
}

// CopyDir copies a directory tree of regular files.
func CopyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if entry.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// EditMetadata rewrites the __metadata__ strings of the safetensors file dir/file through edit, keeping every
// tensor byte (offsets are relative to the data, which does not move within it).
func EditMetadata(t testing.TB, dir, file string, edit func(metadata map[string]string)) {
	t.Helper()
	path := filepath.Join(dir, file)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 8 {
		t.Fatalf("%s: too short for a safetensors file", path)
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	if n > uint64(len(raw)-8) {
		t.Fatalf("%s: header length %d exceeds the file", path, n)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &header); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	metadata := map[string]string{}
	if m, ok := header["__metadata__"]; ok {
		if err := json.Unmarshal(m, &metadata); err != nil {
			t.Fatalf("%s: __metadata__: %v", path, err)
		}
	}
	edit(metadata)
	encoded, err := json.Marshal(metadata)
	if err != nil {
		t.Fatal(err)
	}
	header["__metadata__"] = encoded
	out, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	for len(out)%8 != 0 { // keep the data 8-byte aligned, as writers do
		out = append(out, ' ')
	}
	file8 := make([]byte, 8, 8+len(out)+len(raw)-8-int(n))
	binary.LittleEndian.PutUint64(file8, uint64(len(out)))
	file8 = append(append(file8, out...), raw[8+n:]...)
	if err := os.WriteFile(path, file8, 0o644); err != nil {
		t.Fatal(err)
	}
}
