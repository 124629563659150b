// Package routertest builds models roots from copies of the generated fixtures (make fixtures), for tests
// that serve real models. Tests fail, never skip, when LORAKIT_FIXTURES is unset.
package routertest

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"lorakit/lorakit/lorakittest"
)

// Fixture models: two adapters on one base, and a merged-only model.
const (
	Base  = "tiny_bert_base"
	LoraA = "tiny_bert_lora_a"
	LoraB = "tiny_bert_lora_b"
	Full  = "tiny_bert_full"
)

// ModelsRoot copies the named fixture directories side by side into a fresh models root, so relative
// base paths ("../tiny_bert_base") keep working, and returns the root.
func ModelsRoot(t testing.TB, names ...string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "models")
	for _, name := range names {
		CopyDir(t, lorakittest.FixtureDir(t, name), filepath.Join(root, name))
	}
	return root
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
