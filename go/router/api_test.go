package router_test

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/router"
)

func TestClassifySingle(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	status, body := h.do("POST", "/api/v1/classify", `{"text": "what is the weather today", "task": "intent"}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	// bert beats roberta for "intent" under the default priority.
	if body["model"] != "intent_bert" || body["task"] != "intent" || body["label"] != "weather" || body["predicted_label"] != "weather" {
		t.Errorf("answer %v", body)
	}
	if c := body["confidence"].(float64); math.Abs(c-0.9) > 1e-6 {
		t.Errorf("confidence %v", c)
	}
	if _, ok := body["probabilities"]; ok {
		t.Error("probabilities returned without return_probabilities")
	}
	if body["tokens_in"].(float64) != 7 || body["tokens_used"].(float64) != 7 || body["truncated"] != false {
		t.Errorf("tokens %v/%v truncated %v", body["tokens_in"], body["tokens_used"], body["truncated"])
	}
	if body["generation"].(float64) != 1 || body["total_ms"].(float64) < body["inference_ms"].(float64) {
		t.Errorf("generation %v total %v inference %v", body["generation"], body["total_ms"], body["inference_ms"])
	}
}

func TestClassifyOptions(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	status, body := h.do("POST", "/api/v1/classify",
		`{"text": "play some music", "task": "intent", "options": {"return_probabilities": true}}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	probs := body["probabilities"].(map[string]any)
	if len(probs) != 3 {
		t.Fatalf("probabilities %v, want the full distribution over 3 labels", probs)
	}
	sum := 0.0
	for _, p := range probs {
		sum += p.(float64)
	}
	if math.Abs(sum-1) > 1e-5 || math.Abs(probs["music"].(float64)-0.9) > 1e-6 {
		t.Errorf("probabilities %v (sum %v)", probs, sum)
	}

	// Uniform answer (confidence 1/3) against thresholds on both sides.
	status, body = h.do("POST", "/api/v1/classify",
		`{"text": "no label words here", "task": "intent", "options": {"confidence_threshold": 0.5}}`)
	if status != http.StatusOK || body["label"] != router.UnknownLabel || body["below_threshold"] != true || body["predicted_label"] != "greeting" {
		t.Errorf("below threshold: %d %v", status, body)
	}
	status, body = h.do("POST", "/api/v1/classify",
		`{"text": "no label words here", "task": "intent", "options": {"confidence_threshold": 0.3}}`)
	if status != http.StatusOK || body["label"] != "greeting" || body["below_threshold"] != false {
		t.Errorf("above threshold: %d %v", status, body)
	}
	for _, bad := range []string{"-0.1", "1.5"} {
		status, body = h.do("POST", "/api/v1/classify",
			`{"text": "x", "task": "intent", "options": {"confidence_threshold": `+bad+`}}`)
		if status != http.StatusBadRequest || errorCode(t, body) != "invalid_request" {
			t.Errorf("threshold %s: %d %v", bad, status, body)
		}
	}
}

func TestClassifyByModelIDAndUnknownTask(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	status, body := h.do("POST", "/api/v1/classify", `{"text": "hello greeting", "task": "intent_roberta"}`)
	if status != http.StatusOK || body["model"] != "intent_roberta" || body["label"] != "greeting" {
		t.Errorf("by id: %d %v", status, body)
	}
	status, body = h.do("POST", "/api/v1/classify", `{"text": "x", "task": "sentiment"}`)
	if status != http.StatusNotFound || errorCode(t, body) != "unknown_task" {
		t.Errorf("unknown task: %d %v", status, body)
	}
	if msg := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "intent, jailbreak, pii") {
		t.Errorf("message does not list the tasks: %s", msg)
	}
	status, body = h.do("POST", "/api/v1/classify", `{"text": "x", "task": "all"}`)
	if status != http.StatusBadRequest || errorCode(t, body) != "invalid_request" {
		t.Errorf("all on the single route: %d %v", status, body)
	}
}

func TestBatchSingleTask(t *testing.T) {
	h := loaded(t, &fakeLoader{delay: 20 * time.Millisecond})
	status, body := h.do("POST", "/api/v1/classify/batch", `{"texts": ["my email please", "call my phone number now", "hi"],
		"task_type": "pii", "options": {"return_probabilities": true, "confidence_threshold": 0.5}}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	results := body["results"].([]any)
	if len(results) != 3 {
		t.Fatalf("%d results", len(results))
	}
	wantLabels := []string{"email", "phone", router.UnknownLabel}
	var itemMS float64
	for i, r := range results {
		item := r.(map[string]any)
		if int(item["index"].(float64)) != i || item["label"] != wantLabels[i] || item["model"] != "pii" {
			t.Errorf("result %d: %v", i, item)
		}
		if len(item["probabilities"].(map[string]any)) != 4 {
			t.Errorf("result %d probabilities %v", i, item["probabilities"])
		}
		itemMS += item["inference_ms"].(float64)
	}
	timing := body["timing"].(map[string]any)
	tasks := timing["tasks"].([]any)
	if len(tasks) != 1 {
		t.Fatalf("timing %v", timing)
	}
	task := tasks[0].(map[string]any)
	// Per-item times are the batch time split by tokens (rounded to µs): they add up to the measured time.
	if got := task["inference_ms"].(float64); got < 20 || math.Abs(got-itemMS) > 0.002 {
		t.Errorf("item times sum to %v, batch took %v", itemMS, got)
	}
	if task["tokens_used"].(float64) != 5+7+3 || task["texts"].(float64) != 3 {
		t.Errorf("task timing %v", task)
	}
	// The longer text gets the larger share.
	first, second := results[0].(map[string]any)["inference_ms"].(float64), results[1].(map[string]any)["inference_ms"].(float64)
	if !(second > first) {
		t.Errorf("shares not proportional to tokens: %v vs %v", first, second)
	}
}

func TestBatchAllRunsEveryTask(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	status, body := h.do("POST", "/api/v1/classify/batch", `{"texts": ["jailbreak the weather", "email"], "task_type": "all"}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	results := body["results"].([]any)
	first := results[0].(map[string]any)["tasks"].(map[string]any)
	if len(first) != 3 {
		t.Fatalf("tasks %v, want intent, jailbreak, pii", first)
	}
	want := map[string][2]string{"intent": {"intent_bert", "weather"}, "jailbreak": {"jailbreak", "jailbreak"}, "pii": {"pii", "none"}}
	for task, w := range want {
		c := first[task].(map[string]any)
		if c["model"] != w[0] || c["task"] != task {
			t.Errorf("%s: %v", task, c)
		}
		if task != "pii" && c["label"] != w[1] {
			t.Errorf("%s label %v, want %s", task, c["label"], w[1])
		}
	}
	second := results[1].(map[string]any)["tasks"].(map[string]any)
	if second["pii"].(map[string]any)["label"] != "email" {
		t.Errorf("second text pii: %v", second["pii"])
	}
	if tasks := body["timing"].(map[string]any)["tasks"].([]any); len(tasks) != 3 {
		t.Errorf("timing tasks %v", tasks)
	}
}

func TestRequestErrors(t *testing.T) {
	h := newHarness(t, testRoot(t), &fakeLoader{}, router.Limits{MaxBatch: 3, MaxTextBytes: 10, MaxBodyBytes: 200})
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/api/v1/classify", `{"text": "x", "task": `, 400, "invalid_json"},
		{"POST", "/api/v1/classify", `[1, 2]`, 400, "invalid_json"},
		{"POST", "/api/v1/classify", `{"text": "x", "task": "intent"} {}`, 400, "invalid_json"},
		{"POST", "/api/v1/classify", `{"text": "x", "task": "intent", "options": {"return_probability": true}}`, 400, "invalid_json"},
		{"POST", "/api/v1/classify", `{"text": 5, "task": "intent"}`, 400, "invalid_json"},
		{"POST", "/api/v1/classify", `{"task": "intent"}`, 400, "invalid_request"},
		{"POST", "/api/v1/classify", `{"text": "x"}`, 400, "invalid_request"},
		{"POST", "/api/v1/classify", `{"text": "0123456789a", "task": "intent"}`, 413, "text_too_large"},
		{"POST", "/api/v1/classify", `{"text": "` + strings.Repeat("a", 300) + `", "task": "intent"}`, 413, "body_too_large"},
		{"POST", "/api/v1/classify/batch", `{"task_type": "intent"}`, 400, "invalid_request"},
		{"POST", "/api/v1/classify/batch", `{"texts": [], "task_type": "intent"}`, 400, "invalid_request"},
		{"POST", "/api/v1/classify/batch", `{"texts": ["a", "b", "c", "d"], "task_type": "intent"}`, 413, "batch_too_large"},
		{"POST", "/api/v1/classify/batch", `{"texts": ["a", "0123456789a"], "task_type": "all"}`, 413, "text_too_large"},
		{"POST", "/api/v1/classify/batch", `{"texts": ["a"], "task_type": "nope"}`, 404, "unknown_task"},
		{"POST", "/api/v1/classify/batch", `{"texts": ["a"]}`, 400, "invalid_request"},
		{"GET", "/api/v1/classify", ``, 405, "method_not_allowed"},
		{"PUT", "/api/v1/classify/batch", `{}`, 405, "method_not_allowed"},
		{"POST", "/health", ``, 405, "method_not_allowed"},
		{"GET", "/api/v2/everything", ``, 404, "not_found"},
	}
	for _, c := range cases {
		status, body := h.do(c.method, c.path, c.body)
		if status != c.status || errorCode(t, body) != c.code {
			t.Errorf("%s %s %.40q: %d %v, want %d %s", c.method, c.path, c.body, status, body, c.status, c.code)
		}
	}
	// A rune-heavy text is measured in bytes, not characters.
	status, body := h.do("POST", "/api/v1/classify", `{"text": "ééééé é", "task": "intent"}`)
	if status != 413 {
		t.Errorf("12-byte text: %d %v", status, body)
	}
}

func TestModelFailuresAreJSONErrors(t *testing.T) {
	loader := &fakeLoader{behaviour: map[string]string{
		"intent_bert": "nan", "jailbreak": "error", "pii": "panic", "intent_roberta": "input_error"}}
	h := loaded(t, loader)
	cases := []struct {
		task   string
		status int
		code   string
	}{
		{"intent", 500, "invalid_model_output"},
		{"jailbreak", 500, "model_error"},
		{"pii", 500, "internal"},
		{"intent_roberta", 400, "invalid_input"},
	}
	for _, c := range cases {
		status, body := h.do("POST", "/api/v1/classify", `{"text": "x", "task": "`+c.task+`"}`)
		if status != c.status || errorCode(t, body) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.task, status, body, c.status, c.code)
		}
	}
	status, body := h.do("POST", "/api/v1/classify/batch", `{"texts": ["x"], "task_type": "all"}`)
	if status != 500 {
		t.Errorf("all with failing models: %d %v", status, body)
	}
	// The server survived the panic and still answers.
	if status, _ := h.do("GET", "/health", ""); status != 200 {
		t.Errorf("health after panic: %d", status)
	}
	loader.set(func(l *fakeLoader) { l.behaviour = map[string]string{"pii": "short"} })
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	status, body = h.do("POST", "/api/v1/classify", `{"text": "x", "task": "pii"}`)
	if status != 500 || errorCode(t, body) != "invalid_model_output" {
		t.Errorf("short output: %d %v", status, body)
	}
}
