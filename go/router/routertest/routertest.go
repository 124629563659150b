// Package routertest builds models roots from copies of the generated fixtures (make fixtures), for tests
// that serve real models. Tests fail, never skip, when LORAKIT_FIXTURES is unset.
package routertest

import (
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
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
		lorakittest.CopyDir(t, lorakittest.FixtureDir(t, name), filepath.Join(root, name))
	}
	return root
}
