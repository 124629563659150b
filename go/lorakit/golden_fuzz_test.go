package lorakit_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit"
)

// FuzzReadGolden feeds arbitrary bytes to the golden reader: it never panics, every failure is ErrFormat
// or ErrIO, and whatever it accepts has arrays of exactly the sizes its shapes declare (the parity checks
// index them without further checks). Seeds: every fixture's golden.safetensors, when the fixtures exist.
func FuzzReadGolden(f *testing.F) {
	if root := os.Getenv("LORAKIT_FIXTURES"); root != "" {
		seeds, _ := filepath.Glob(filepath.Join(root, "*", lorakit.GoldenFile))
		for _, name := range seeds {
			if data, err := os.ReadFile(name); err == nil && len(data) < 256<<10 {
				f.Add(data)
			}
		}
	}
	f.Add([]byte{})
	f.Add([]byte("\x08\x00\x00\x00\x00\x00\x00\x00{}      "))
	f.Add([]byte(`2\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{"texts":"[\"a\"]"},"input_ids":{}}`))
	path := filepath.Join(f.TempDir(), lorakit.GoldenFile) // one scratch file per process: inputs run serially
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		g, err := lorakit.ReadGolden(path)
		if err != nil {
			if !errors.Is(err, lorakit.ErrFormat) && !errors.Is(err, lorakit.ErrIO) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		cells := g.NumTexts * g.SeqLen
		if g.NumTexts != len(g.Texts) || len(g.InputIDs) != cells || len(g.AttentionMask) != cells {
			t.Fatalf("texts %d/%d, ids %d, mask %d for [%d, %d]", g.NumTexts, len(g.Texts), len(g.InputIDs),
				len(g.AttentionMask), g.NumTexts, g.SeqLen)
		}
		want := map[string]int{
			lorakit.OutputLogits:          g.NumTexts * g.NumLabels,
			lorakit.OutputTokenLogits:     cells * g.NumLabels,
			lorakit.OutputEmbeddings:      0,
			lorakit.OutputNextTokenLogits: g.NumTexts * g.VocabSize,
		}[g.Output]
		if len(g.Logits) != want {
			t.Fatalf("%s: %d logits, want %d", g.Output, len(g.Logits), want)
		}
		if g.Output == lorakit.OutputEmbeddings && len(g.Embeddings) != g.NumTexts*g.Dim {
			t.Fatalf("%d embedding values for [%d, %d]", len(g.Embeddings), g.NumTexts, g.Dim)
		}
		if g.Output == lorakit.OutputTokenLogits && len(g.Entities) != g.NumTexts {
			t.Fatalf("%d entity lists for %d texts", len(g.Entities), g.NumTexts)
		}
		if g.Output == lorakit.OutputNextTokenLogits {
			if len(g.LabelProbs) != g.NumTexts*g.NumLabels || !(g.ProbTolerance >= 0) {
				t.Fatalf("%d label probabilities for [%d, %d], prob tolerance %v", len(g.LabelProbs), g.NumTexts,
					g.NumLabels, g.ProbTolerance)
			}
			for i, c := range g.FewShot {
				if len(c.Probabilities) != len(c.Labels) {
					t.Fatalf("few-shot case %d: %d probabilities for %d labels", i, len(c.Probabilities), len(c.Labels))
				}
			}
		}
		if !(g.Tolerance >= 0) {
			t.Fatalf("tolerance %v", g.Tolerance)
		}
	})
}
