package native_test

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// tiny_bert_calibrated: tiny_bert_lora_a with calibration temperature 1.7 and review_threshold 0.45.
const calibrated = "tiny_bert_calibrated"

// The calibrated adapter, on the base it shares with an uncalibrated one, answers the golden calibrated
// probabilities and review verdicts.
func TestCalibratedModelServesGoldenProbabilitiesAndReviews(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, calibrated)
	set := load(t, root, true)
	if len(set.Failed) != 0 {
		t.Fatalf("failed: %v", set.Failed[0].Err)
	}
	m := byID(set)[calibrated]
	if m.Info == nil || !m.GoldenVerified || m.Info.Mode != discovery.ModeAdapter {
		t.Fatalf("calibrated model not served verified as an adapter: %+v", m)
	}
	gold, err := lorakit.ReadGolden(filepath.Join(root, calibrated, discovery.GoldenFile))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Classifier.Classify(gold.Texts)
	if err != nil {
		t.Fatal(err)
	}
	k := gold.NumLabels
	for i := range gold.NumTexts {
		want := gold.Probabilities[i*k : (i+1)*k]
		for j, p := range out.Probabilities[i*k : (i+1)*k] {
			if math.Abs(float64(p-want[j])) > gold.Tolerance {
				t.Fatalf("text %d label %d: %v, golden %v", i, j, p, want[j])
			}
		}
		top := float64(slices.Max(want))
		if math.Abs(top-gold.ReviewThreshold) > gold.Tolerance && out.NeedsReview[i] != (top < gold.ReviewThreshold) {
			t.Errorf("text %d: top %v, needs_review %v", i, top, out.NeedsReview[i])
		}
	}
	if !slices.Contains(out.NeedsReview, true) || !slices.Contains(out.NeedsReview, false) {
		t.Errorf("verdicts %v: the fixture has both", out.NeedsReview)
	}
	plain, err := byID(set)[routertest.LoraA].Classifier.Classify(gold.Texts[:2])
	if err != nil || slices.Contains(plain.NeedsReview, true) {
		t.Errorf("uncalibrated adapter on the same base: %v %v", plain.NeedsReview, err)
	}
}

// With --verify-golden, a calibrated model whose temperature was changed is refused for its probabilities.
func TestVerifyGoldenRefusesATamperedTemperature(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, calibrated)
	lorakittest.EditManifest(t, filepath.Join(root, calibrated), func(m map[string]any) {
		m["calibration"].(map[string]any)["temperature"] = 1.0
	})
	set := load(t, root, true)
	if len(set.Models) != 0 || len(set.Failed) != 1 ||
		!strings.Contains(set.Failed[0].Err.Error(), "golden parity failed: probabilities") {
		t.Fatalf("models %d failed %v", len(set.Models), set.Failed)
	}
}
