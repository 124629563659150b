package main

import (
	"context"
	"encoding/json"
	"math"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router/routertest"
)

const (
	tokenLora = "tiny_bert_token_lora"
	embedLora = "tiny_bert_embed_lora"
)

// A taken port fails the start at once, before any model is loaded.
func TestPortTakenFailsBeforeLoading(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.Full)
	var stderr safeBuffer
	start := time.Now()
	code := run(context.Background(), []string{"--models", root, "--addr", taken.Addr().String()}, &stderr, nil)
	logs := stderr.String()
	if code != 1 || !strings.Contains(logs, "listen failed; no model was loaded") || !strings.Contains(logs, taken.Addr().String()) {
		t.Fatalf("exit %d, log %s", code, logs)
	}
	if strings.Contains(logs, "model loaded") || strings.Contains(logs, "base loaded") {
		t.Errorf("models were loaded before the port was bound: %s", logs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failing took %s", d)
	}
}

func floats(t *testing.T, v any) []float64 {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("not a list: %v", v)
	}
	out := make([]float64, len(list))
	for i, x := range list {
		out[i] = x.(float64)
	}
	return out
}

// The compatibility routes answer what the native API answers for the same text and model, and /predict
// reproduces the golden logits with raw_scores.
func TestCompatRoutesServeFixtures(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.Full, tokenLora, embedLora)
	lorakittest.EditManifest(t, filepath.Join(root, routertest.Full), func(m map[string]any) { m["unsafe_labels"] = []string{"malicious"} })
	url, _ := startRouter(t, "--models", root, "--predict-model", routertest.LoraA)
	text := "Alice moved to Paris to close her account"

	// intent: the only classifier without unsafe labels (tiny_bert_lora_a).
	_, native := call(t, "POST", url+"/api/v1/classify", map[string]any{"text": text, "task": routertest.LoraA})
	status, intent := call(t, "POST", url+"/api/v1/classify/intent", map[string]any{"text": text})
	c := intent["classification"].(map[string]any)
	if status != 200 || c["category"] != native["label"] || c["confidence"] != native["confidence"] {
		t.Errorf("intent %d %v, native %v", status, intent, native)
	}

	// security: the classifier with unsafe labels (tiny_bert_full).
	_, native = call(t, "POST", url+"/api/v1/classify", map[string]any{"text": text, "task": routertest.Full})
	status, sec := call(t, "POST", url+"/api/v1/classify/security", map[string]any{"text": text})
	if status != 200 || sec["is_jailbreak"] != native["unsafe"] || sec["risk_score"] != native["unsafe_score"] || sec["confidence"] != native["confidence"] {
		t.Errorf("security %d %v, native %v", status, sec, native)
	}

	// pii: the token classifier; the same spans as the native entities.
	_, native = call(t, "POST", url+"/api/v1/classify", map[string]any{"text": text, "task": tokenLora})
	status, pii := call(t, "POST", url+"/api/v1/classify/pii", map[string]any{"text": text, "options": map[string]any{"mask_entities": true}})
	want := native["entities"].([]any)
	got := pii["entities"].([]any)
	if status != 200 || len(got) != len(want) || pii["has_pii"] != (len(want) > 0) {
		t.Fatalf("pii %d %v, native %v", status, pii, native)
	}
	for i := range want {
		w, g := want[i].(map[string]any), got[i].(map[string]any)
		if g["type"] != w["type"] || g["value"] != w["text"] || g["start_position"] != w["start"] || g["end_position"] != w["end"] {
			t.Errorf("entity %d: %v, native %v", i, g, w)
		}
	}
	t.Logf("pii: %d entities, as the native route", len(want))
	masked, err := lorakit.Mask(text, nativeEntities(t, want))
	if err != nil {
		t.Fatal(err)
	}
	if len(want) > 0 && pii["masked_text"] != masked {
		t.Errorf("masked %q, the core masks %q", pii["masked_text"], masked)
	}

	// /predict with raw_scores reproduces the golden logits of tiny_bert_lora_a.
	gold, err := lorakit.ReadGolden(filepath.Join(root, routertest.LoraA, discovery.GoldenFile))
	if err != nil {
		t.Fatal(err)
	}
	batch := make([][]string, len(gold.Texts))
	for i, g := range gold.Texts {
		batch[i] = []string{g}
	}
	status, raw := callRaw(t, "POST", url+"/predict", map[string]any{"inputs": batch, "raw_scores": true, "truncate": true})
	var preds [][]struct {
		Score float64
		Label string
	}
	if err := json.Unmarshal(raw, &preds); status != 200 || err != nil || len(preds) != gold.NumTexts {
		t.Fatalf("predict %d %s", status, raw)
	}
	labels := manifestLabels(t, root, routertest.LoraA)
	worst := 0.0
	for i, row := range preds {
		for _, p := range row {
			j := indexOf(labels, p.Label)
			worst = math.Max(worst, math.Abs(p.Score-float64(gold.Logits[i*gold.NumLabels+j])))
		}
		for j := 1; j < len(row); j++ {
			if row[j].Score > row[j-1].Score {
				t.Errorf("text %d: scores not best first: %v", i, row)
			}
		}
	}
	if worst > 1e-4 {
		t.Errorf("/predict raw scores differ from the golden logits by %g", worst)
	}
	t.Logf("/predict raw_scores over %d golden texts: max |score - golden logit| = %.2g", gold.NumTexts, worst)

	// TEI /embed equals the native embeddings, L2-normalised.
	_, nativeEmb := call(t, "POST", url+"/api/v1/embed", map[string]any{"texts": []string{text}})
	status, raw = callRaw(t, "POST", url+"/embed", map[string]any{"inputs": text, "truncate": true})
	var vecs [][]float64
	if err := json.Unmarshal(raw, &vecs); status != 200 || err != nil || len(vecs) != 1 {
		t.Fatalf("embed %d %s", status, raw)
	}
	ref := floats(t, nativeEmb["embeddings"].([]any)[0])
	norm := 0.0
	for _, x := range ref {
		norm += x * x
	}
	for i := range ref {
		if math.Abs(vecs[0][i]-ref[i]/math.Sqrt(norm)) > 1e-6 {
			t.Fatalf("embed[%d] = %v, native %v", i, vecs[0][i], ref[i]/math.Sqrt(norm))
		}
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func nativeEntities(t *testing.T, list []any) []lorakit.Entity {
	t.Helper()
	var out []lorakit.Entity
	for _, e := range list {
		m := e.(map[string]any)
		out = append(out, lorakit.Entity{Type: m["type"].(string), Start: int(m["start"].(float64)), End: int(m["end"].(float64)),
			Text: m["text"].(string), Score: float32(m["score"].(float64))})
	}
	return out
}
