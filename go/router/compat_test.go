package router_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/router"
)

// compatHarness serves taskRoot (guard, topic, names, embedder) with the given compatibility choices.
func compatHarness(t *testing.T, compat router.CompatModels) *harness {
	t.Helper()
	h := newHarnessWith(t, taskRoot(t), &fakeLoader{}, func(c *router.Config) { c.Compat = compat })
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

// doAny sends a request whose answer may be any JSON value (TEI answers bare lists).
func (h *harness) doAny(method, path, body string) (int, any) {
	h.t.Helper()
	status, raw := h.raw(method, path, body)
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		h.t.Fatalf("%s %s: not JSON: %s", method, path, raw)
	}
	return status, out
}

type teiScore struct {
	Score float64 `json:"score"`
	Label string  `json:"label"`
}

func teiScores(t *testing.T, v any) []teiScore {
	t.Helper()
	data, _ := json.Marshal(v)
	var out []teiScore
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("not a TEI prediction list: %s", data)
	}
	return out
}

func TestTEIPredictShapes(t *testing.T) {
	h := compatHarness(t, router.CompatModels{Predict: "topic"})
	// A single input, as a string or a one-element list, answers one list: every label, best first.
	for _, inputs := range []string{`"play music"`, `["play music"]`} {
		status, body := h.doAny("POST", "/predict", `{"inputs": `+inputs+`}`)
		if status != 200 {
			t.Fatalf("%s: %d %v", inputs, status, body)
		}
		got := teiScores(t, body)
		if len(got) != 2 || got[0].Label != "music" || math.Abs(got[0].Score-0.9) > 1e-6 || got[1].Label != "sport" {
			t.Errorf("%s: %v", inputs, got)
		}
	}
	// A batch answers one list per input, in order.
	status, body := h.doAny("POST", "/predict", `{"inputs": [["play music"], ["sport news"], ["nothing"]]}`)
	if status != 200 {
		t.Fatalf("batch: %d %v", status, body)
	}
	batch := body.([]any)
	if len(batch) != 3 || teiScores(t, batch[0])[0].Label != "music" || teiScores(t, batch[1])[0].Label != "sport" {
		t.Errorf("batch: %v", batch)
	}
	// raw_scores answers the logits (here log p), still best first.
	_, body = h.doAny("POST", "/predict", `{"inputs": "play music", "raw_scores": true}`)
	if got := teiScores(t, body); math.Abs(got[0].Score-math.Log(0.9)) > 1e-5 || math.Abs(got[1].Score-math.Log(0.1)) > 1e-5 {
		t.Errorf("raw scores %v", got)
	}
}

func TestTEIPredictRefusals(t *testing.T) {
	h := compatHarness(t, router.CompatModels{Predict: "topic"})
	long := strings.Repeat("word ", 200) // 202 fake tokens > max_seq_len 128
	for name, c := range map[string]struct {
		body   string
		status int
		code   string
		says   string
	}{
		"pair":            {`{"inputs": ["a", "b"]}`, 400, "invalid_request", "text pairs"},
		"pair in a batch": {`{"inputs": [["a"], ["b", "c"]]}`, 400, "invalid_request", "text pairs"},
		"three strings":   {`{"inputs": ["a", "b", "c"]}`, 400, "invalid_request", "list of 3"},
		"no inputs":       {`{"truncate": true}`, 400, "invalid_request", "inputs is required"},
		"null inputs":     {`{"inputs": null}`, 400, "invalid_request", "inputs is required"},
		"number":          {`{"inputs": 3}`, 400, "invalid_request", "inputs"},
		"unknown field":   {`{"inputs": "a", "top_k": 2}`, 400, "invalid_json", "top_k"},
		"too long":        {`{"inputs": "` + long + `"}`, 413, "input_too_long", "less than 128 tokens. Given: 202"},
	} {
		status, body := h.do("POST", "/predict", c.body)
		if status != c.status || errorCode(t, body) != c.code || !strings.Contains(body["error"].(map[string]any)["message"].(string), c.says) {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	if status, body := h.doAny("POST", "/predict", `{"inputs": "`+long+`", "truncate": true}`); status != 200 {
		t.Errorf("truncate: %d %v", status, body)
	}
}

func TestTEIEmbed(t *testing.T) {
	h := compatHarness(t, router.CompatModels{})
	status, body := h.doAny("POST", "/embed", `{"inputs": ["aab", "b"]}`)
	if status != 200 {
		t.Fatalf("%d %v", status, body)
	}
	vecs := body.([]any)
	if len(vecs) != 2 {
		t.Fatalf("%v", vecs)
	}
	// Fake vectors are (count a, count b, 1) = (2, 1, 1): normalised by default.
	v := vecs[0].([]any)
	n := math.Sqrt(6)
	if math.Abs(v[0].(float64)-2/n) > 1e-6 || math.Abs(v[2].(float64)-1/n) > 1e-6 {
		t.Errorf("normalised vector %v", v)
	}
	_, body = h.doAny("POST", "/embed", `{"inputs": "aab", "normalize": false}`)
	if raw := body.([]any)[0].([]any); raw[0] != 2.0 || raw[1] != 1.0 || raw[2] != 1.0 {
		t.Errorf("raw vector %v", raw)
	}
	// /embed is the embedding model's only; a classifier named for it is refused.
	h = compatHarness(t, router.CompatModels{Embed: "topic"})
	status, out := h.do("POST", "/embed", `{"inputs": "a"}`)
	if status != 503 || errorCode(t, out) != "model_unavailable" {
		t.Errorf("classifier as embedder: %d %v", status, out)
	}
}

func TestSemanticIntent(t *testing.T) {
	h := compatHarness(t, router.CompatModels{}) // default: topic, the only classifier without unsafe labels
	status, body := h.do("POST", "/api/v1/classify/intent", `{"text": "play some music", "options": {"return_probabilities": true}}`)
	if status != 200 {
		t.Fatalf("%d %v", status, body)
	}
	c := body["classification"].(map[string]any)
	if c["category"] != "music" || math.Abs(c["confidence"].(float64)-0.9) > 1e-6 || body["routing_decision"] != "high_confidence_specialized" {
		t.Errorf("%v", body)
	}
	if p := body["probabilities"].(map[string]any); len(p) != 2 || math.Abs(p["sport"].(float64)-0.1) > 1e-6 {
		t.Errorf("probabilities %v", p)
	}
	_, body = h.do("POST", "/api/v1/classify/intent", `{"text": "play some music", "options": {"confidence_threshold": 0.95}}`)
	if body["routing_decision"] != "low_confidence_general" || body["probabilities"] != nil {
		t.Errorf("threshold 0.95: %v", body)
	}
	for name, req := range map[string]string{
		"empty text":  `{"text": ""}`,
		"no text":     `{"options": {}}`,
		"bad option":  `{"text": "a", "options": {"top_k": 3}}`,
		"threshold 2": `{"text": "a", "options": {"confidence_threshold": 2}}`,
	} {
		if status, body := h.do("POST", "/api/v1/classify/intent", req); status != 400 {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
}

func TestSemanticSecurity(t *testing.T) {
	h := compatHarness(t, router.CompatModels{}) // default: guard, the only classifier with unsafe labels
	status, body := h.do("POST", "/api/v1/classify/security", `{"text": "a jailbreak attempt", "options": {"include_reasoning": true}}`)
	if status != 200 {
		t.Fatalf("%d %v", status, body)
	}
	if body["is_jailbreak"] != true || math.Abs(body["risk_score"].(float64)-0.9) > 1e-6 || body["recommendation"] != "block" ||
		len(body["detection_types"].([]any)) != 1 || body["detection_types"].([]any)[0] != "jailbreak" ||
		!strings.Contains(body["reasoning"].(string), "jailbreak") {
		t.Errorf("unsafe: %v", body)
	}
	_, body = h.do("POST", "/api/v1/classify/security", `{"text": "a benign question"}`)
	if body["is_jailbreak"] != false || body["recommendation"] != "allow" || len(body["detection_types"].([]any)) != 0 ||
		math.Abs(body["risk_score"].(float64)-0.1) > 1e-6 || body["reasoning"] != nil {
		t.Errorf("safe: %v", body)
	}
}

func TestSemanticPII(t *testing.T) {
	h := compatHarness(t, router.CompatModels{}) // default: names, the only token classifier
	status, body := h.do("POST", "/api/v1/classify/pii", `{"text": "ask Zoë in Örebro", "options": {"mask_entities": true}}`)
	if status != 200 {
		t.Fatalf("%d %v", status, body)
	}
	ents := body["entities"].([]any)
	if body["has_pii"] != true || body["security_recommendation"] != "block" || len(ents) != 2 ||
		body["masked_text"] != "ask [NAME] in [NAME]" {
		t.Fatalf("%v", body)
	}
	e := ents[1].(map[string]any)
	if e["type"] != "NAME" || e["value"] != "Örebro" || e["start_position"] != 11.0 || e["end_position"] != 17.0 ||
		e["masked_value"] != "[NAME]" || math.Abs(e["confidence"].(float64)-0.9) > 1e-6 {
		t.Errorf("entity %v", e)
	}
	for name, opts := range map[string]string{
		"other types":    `{"entity_types": ["PHONE"]}`,
		"high threshold": `{"confidence_threshold": 0.95}`,
	} {
		_, body := h.do("POST", "/api/v1/classify/pii", `{"text": "ask Zoë", "options": `+opts+`}`)
		if body["has_pii"] != false || len(body["entities"].([]any)) != 0 || body["security_recommendation"] != "allow" || body["masked_text"] != nil {
			t.Errorf("%s: %v", name, body)
		}
	}
	_, body = h.do("POST", "/api/v1/classify/pii", `{"text": "ask Zoë", "options": {"entity_types": ["name"], "mask_entities": true}}`)
	if body["masked_text"] != "ask [NAME]" {
		t.Errorf("case-insensitive type filter: %v", body)
	}
}

// Which model serves each compatibility route: the only one that fits, or the configured one; otherwise a
// 503 that names the flag, or a 404 for a configured name that is not loaded.
func TestCompatModelSelection(t *testing.T) {
	// testRoot: intent (two models), jailbreak and pii are sequence classifiers without unsafe labels.
	h := loaded(t, &fakeLoader{})
	for route, want := range map[string]string{
		"/api/v1/classify/intent":   "choose one with --intent-model",
		"/api/v1/classify/security": "sequence-classification model with unsafe labels and none is loaded",
		"/api/v1/classify/pii":      "token-classification model and none is loaded",
	} {
		status, body := h.do("POST", route, `{"text": "hello"}`)
		if status != 503 || errorCode(t, body) != "model_unavailable" || !strings.Contains(body["error"].(map[string]any)["message"].(string), want) {
			t.Errorf("%s: %d %v", route, status, body)
		}
	}
	if status, body := h.do("POST", "/predict", `{"inputs": "hello"}`); status != 503 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "--predict-model") {
		t.Errorf("/predict: %d %v", status, body)
	}
	if status, body := h.do("POST", "/embed", `{"inputs": "hello"}`); status != 503 || errorCode(t, body) != "model_unavailable" {
		t.Errorf("/embed: %d %v", status, body)
	}

	h = newHarnessWith(t, testRoot(t), &fakeLoader{}, func(c *router.Config) {
		c.Compat = router.CompatModels{Intent: "intent_roberta", Security: "intent", PII: "absent"}
	})
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A model id selects a model that does not win its task.
	status, body := h.do("POST", "/api/v1/classify/intent", `{"text": "music please"}`)
	if status != 200 || body["classification"].(map[string]any)["category"] != "music" {
		t.Errorf("configured intent: %d %v", status, body)
	}
	if status, body := h.do("POST", "/api/v1/classify/security", `{"text": "hello"}`); status != 503 || errorCode(t, body) != "model_unavailable" {
		t.Errorf("security model without unsafe labels: %d %v", status, body)
	}
	if status, body := h.do("POST", "/api/v1/classify/pii", `{"text": "hello"}`); status != 404 || errorCode(t, body) != "unknown_task" ||
		!strings.Contains(body["error"].(map[string]any)["message"].(string), "--pii-model") {
		t.Errorf("absent pii model: %d %v", status, body)
	}
}
