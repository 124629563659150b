package native_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/native"
	"github.com/lorakit/lorakit/go/router/routertest"
)

func load(t *testing.T, root string, verify bool) *router.LoadedSet {
	t.Helper()
	cat, err := discovery.Scan(root, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	loader := &native.Loader{Options: lorakit.Options{Threads: 1}, VerifyGolden: verify}
	set, err := loader.Load(context.Background(), cat)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range set.Closers {
			if err := c.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	})
	return set
}

func byID(set *router.LoadedSet) map[string]router.LoadedModel {
	out := map[string]router.LoadedModel{}
	for _, m := range set.Models {
		out[m.Info.ID] = m
	}
	return out
}

func softmax(row []float32) []float64 {
	maxV := math.Inf(-1)
	for _, v := range row {
		maxV = math.Max(maxV, float64(v))
	}
	out := make([]float64, len(row))
	sum := 0.0
	for i, v := range row {
		out[i] = math.Exp(float64(v) - maxV)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// Every fixture model, adapters on one shared base and the merged one, reproduces the golden distribution.
func TestLoadsFixturesAndMatchesGolden(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.LoraB, routertest.Full)
	set := load(t, root, true)
	if len(set.Failed) != 0 {
		t.Fatalf("failed: %v", set.Failed[0].Err)
	}
	models := byID(set)
	if len(models) != 3 || len(set.Closers) != 3 { // one base (two adapters), one merged model, the heap trim
		t.Fatalf("%d models, %d closers", len(models), len(set.Closers))
	}
	for id, wantMode := range map[string]discovery.Mode{
		routertest.LoraA: discovery.ModeAdapter, routertest.LoraB: discovery.ModeAdapter, routertest.Full: discovery.ModeMerged,
	} {
		m, ok := models[id]
		if !ok {
			t.Fatalf("%s not loaded", id)
		}
		if m.Info.Mode != wantMode || !m.GoldenVerified {
			t.Errorf("%s: mode %s verified %v", id, m.Info.Mode, m.GoldenVerified)
		}
		gold, err := lorakit.ReadGolden(filepath.Join(root, id, discovery.GoldenFile))
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.Classifier.Classify(gold.Texts)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(out.Labels, ",") != strings.Join(m.Info.Manifest.Labels, ",") {
			t.Errorf("%s labels %v", id, out.Labels)
		}
		k := gold.NumLabels
		worst := 0.0
		for i := 0; i < gold.NumTexts; i++ {
			want := softmax(gold.Logits[i*k : (i+1)*k])
			for j, p := range out.Probabilities[i*k : (i+1)*k] {
				worst = math.Max(worst, math.Abs(float64(p)-want[j]))
			}
		}
		if worst > 1e-4 {
			t.Errorf("%s: probabilities differ from softmax(golden logits) by %g", id, worst)
		}
		t.Logf("%s (%s): max |p - p_golden| = %.2g over %d texts", id, wantMode, worst, gold.NumTexts)
	}
}

// A model whose numbers changed (checksums rewritten so only parity can notice) is refused with
// --verify-golden and served without it; the healthy models are unaffected.
func TestVerifyGoldenRefusesTamperedModels(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.LoraB, routertest.Full)
	lorakittest.AddToFloat(t, filepath.Join(root, routertest.LoraA), "adapter_model.safetensors",
		"base_model.model.classifier.bias", 0, 0.5)
	lorakittest.RewriteChecksums(t, filepath.Join(root, routertest.LoraA))
	lorakittest.AddToFloat(t, filepath.Join(root, routertest.Full), "model.safetensors", "classifier.bias", 1, 0.5)
	lorakittest.RewriteChecksums(t, filepath.Join(root, routertest.Full))

	set := load(t, root, true)
	failed := map[string]string{}
	for _, f := range set.Failed {
		failed[f.Info.ID] = f.Err.Error()
	}
	for _, id := range []string{routertest.LoraA, routertest.Full} {
		if !strings.Contains(failed[id], "golden parity failed: logits") {
			t.Errorf("%s not refused for parity: %q", id, failed[id])
		}
	}
	if models := byID(set); len(models) != 1 || !models[routertest.LoraB].GoldenVerified {
		t.Errorf("served %v, want only %s", models, routertest.LoraB)
	}
	t.Logf("refusals: %v", failed)

	unchecked := byID(load(t, root, false))
	if len(unchecked) != 3 || unchecked[routertest.LoraA].GoldenVerified {
		t.Errorf("without verification: %d models", len(unchecked))
	}
}

func TestVerifyGoldenNeedsGoldenVectors(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.Full)
	lorakittest.EditManifest(t, filepath.Join(root, routertest.Full), func(m map[string]any) {
		delete(m["files"].(map[string]any), discovery.GoldenFile)
	})
	set := load(t, root, true)
	if len(set.Models) != 0 || len(set.Failed) != 1 || !strings.Contains(set.Failed[0].Err.Error(), "lists no golden") {
		t.Fatalf("models %d failed %v", len(set.Models), set.Failed)
	}
}

func TestInputErrorsAreInvalidInput(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA)
	cat, err := discovery.Scan(root, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	loader := &native.Loader{Options: lorakit.Options{Threads: 1, MaxBatch: 2}}
	set, err := loader.Load(context.Background(), cat)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Closers[0].Close()
	_, err = set.Models[0].Classifier.Classify([]string{"a", "b", "c"})
	if err == nil || !strings.Contains(err.Error(), "invalid input") {
		t.Fatalf("batch over the core limit: %v", err)
	}
	out, err := set.Models[0].Classifier.Classify([]string{strings.Repeat("very long text ", 100)})
	if err != nil {
		t.Fatal(err)
	}
	if out.TokensUsed[0] != 32 || out.TokensIn[0] <= 32 {
		t.Errorf("truncation: in %d used %d", out.TokensIn[0], out.TokensUsed[0])
	}
}

func TestCancelledLoadClosesEverything(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA)
	cat, err := discovery.Scan(root, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&native.Loader{}).Load(ctx, cat); err == nil {
		t.Fatal("cancelled load succeeded")
	}
}

// A base whose files cannot be loaded (its weights still hash right) is bypassed: adapters that ship merged
// weights are served merged, verified against the same golden vectors.
func TestUnloadableBaseFallsBackToMerged(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.LoraB)
	if err := os.WriteFile(filepath.Join(root, routertest.Base, "config.json"), []byte("{broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	set := load(t, root, true)
	if len(set.Failed) != 0 {
		t.Fatalf("failed: %v", set.Failed[0].Err)
	}
	for id, m := range byID(set) {
		if m.Info.Mode != discovery.ModeMerged || !m.GoldenVerified || !strings.Contains(m.Info.Note, "config.json") {
			t.Errorf("%s: mode %s verified %v note %q", id, m.Info.Mode, m.GoldenVerified, m.Info.Note)
		}
	}
	if len(set.Models) != 2 || len(set.Closers) != 3 { // two models and the heap trim
		t.Errorf("%d models, %d closers", len(set.Models), len(set.Closers))
	}
}

// Option errors are not bypassed: every member fails with the base's error.
func TestBadDeviceFailsEveryModel(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.Full)
	cat, err := discovery.Scan(root, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := (&native.Loader{Options: lorakit.Options{Device: "tpu"}}).Load(context.Background(), cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Models) != 0 || len(set.Failed) != 2 || len(set.Closers) != 1 { // the heap trim only
		t.Fatalf("models %d failed %d closers %d", len(set.Models), len(set.Failed), len(set.Closers))
	}
	for _, f := range set.Failed {
		if !strings.Contains(f.Err.Error(), "tpu") {
			t.Errorf("%s: %v", f.Info.ID, f.Err)
		}
	}
}
