package lorakit

import (
	"errors"
	"math"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

func TestParsePrecision(t *testing.T) {
	for text, want := range map[string]Precision{"fp32": PrecisionFP32, "BF16": PrecisionBF16, " int8 ": PrecisionInt8} {
		got, err := ParsePrecision(text)
		if err != nil || got != want {
			t.Errorf("ParsePrecision(%q) = %v, %v; want %v", text, got, err, want)
		}
		if got.String() != want.String() {
			t.Errorf("%v: String %q", want, got.String())
		}
	}
	if _, err := ParsePrecision("fp16"); !errors.Is(err, ErrInput) {
		t.Fatalf("fp16: want ErrInput, got %v", err)
	}
}

func TestUnknownPrecisionIsErrInput(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_full")
	if _, err := Load(dir, true, Options{Precision: Precision(7)}); !errors.Is(err, ErrInput) {
		t.Fatalf("Precision(7): want ErrInput, got %v", err)
	}
}

// Reduced precision keeps every golden text's label and stays near the fp32 golden logits (the bound is the
// per-precision tolerance of docs/precision.md, far above the fp32 gate).
func TestReducedPrecisionKeepsTheGoldenLabels(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "minilm_lora")
	g := loadGolden(t, dir)
	bounds := map[Precision]float64{PrecisionBF16: 0.05, PrecisionInt8: 0.3} // measured: 0.02 and 0.15
	for precision, bound := range bounds {
		for _, merged := range []bool{true, false} {
			m := loadModel(t, dir, merged, Options{Threads: 2, Precision: precision})
			res, err := m.Classify(g.Texts)
			if err != nil {
				t.Fatalf("%v merged=%v: %v", precision, merged, err)
			}
			for i := 0; i < g.NumTexts; i++ {
				want, got := g.Logits[i*g.NumLabels:(i+1)*g.NumLabels], res.Logits[i*g.NumLabels:(i+1)*g.NumLabels]
				if argmaxOf(want) != argmaxOf(got) {
					t.Errorf("%v merged=%v text %d: label %d, fp32 golden %d", precision, merged, i, argmaxOf(got), argmaxOf(want))
				}
				for j := range want {
					if diff := math.Abs(float64(want[j] - got[j])); diff > bound {
						t.Errorf("%v merged=%v text %d: |diff| %g > %g", precision, merged, i, diff, bound)
					}
				}
			}
		}
	}
}
