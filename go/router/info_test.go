package router_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/router"
)

func TestHealthAndNoModels(t *testing.T) {
	empty := t.TempDir()
	h := newHarness(t, empty, &fakeLoader{}, router.Limits{})
	status, body := h.do("GET", "/health", "")
	if status != 503 || body["status"] != "loading" {
		t.Errorf("before the first load: %d %v", status, body)
	}
	status, body = h.do("POST", "/api/v1/classify", `{"text": "x", "task": "intent"}`)
	if status != 503 || errorCode(t, body) != "no_models" {
		t.Errorf("classify before load: %d %v", status, body)
	}
	if err := h.srv.Reload(context.Background()); err != nil { // an empty root is a valid, empty generation
		t.Fatal(err)
	}
	status, body = h.do("GET", "/health", "")
	if status != 503 || body["generation"].(float64) != 1 || body["status"] != "no_models" {
		t.Errorf("empty root: %d %v", status, body)
	}
	status, body = h.do("POST", "/api/v1/classify/batch", `{"texts": ["x"], "task_type": "all"}`)
	if status != 503 || errorCode(t, body) != "no_models" {
		t.Errorf("all with no tasks: %d %v", status, body)
	}

	h2 := loaded(t, &fakeLoader{})
	status, body = h2.do("GET", "/health", "")
	if status != 200 || body["status"] != "ok" || body["models"].(float64) != 4 {
		t.Errorf("loaded: %d %v", status, body)
	}
	if tasks := body["tasks"].([]any); len(tasks) != 3 || tasks[0] != "intent" {
		t.Errorf("tasks %v", tasks)
	}
}

func TestModelsListing(t *testing.T) {
	loader := &fakeLoader{refuse: map[string]string{"intent_roberta": "golden mismatch: max |diff| 0.5"}}
	root := testRoot(t)
	if err := os.MkdirAll(filepath.Join(root, "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "broken", "lorakit.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, root, loader, router.Limits{})
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	status, body := h.do("GET", "/api/v1/models", "")
	if status != 200 {
		t.Fatalf("status %d %v", status, body)
	}
	models := body["models"].([]any)
	if len(models) != 3 {
		t.Fatalf("models %v", models)
	}
	byID := map[string]map[string]any{}
	for _, m := range models {
		mm := m.(map[string]any)
		byID[mm["id"].(string)] = mm
	}
	ib := byID["intent_bert"]
	if ib["task"] != "intent" || ib["serving"] != true || ib["mode"] != "adapter" || ib["architecture"] != "bert" ||
		ib["kind"] != "sequence_classification" || ib["golden_verified"] != true {
		t.Errorf("intent_bert %v", ib)
	}
	if base := ib["base"].(map[string]any); base["path"] != filepath.Join(root, "base") || len(base["weights_sha256"].(string)) != 64 {
		t.Errorf("base %v", base)
	}
	if pii := byID["pii"]; pii["mode"] != "merged" || pii["path"] != filepath.Join(root, "pii") || len(pii["labels"].([]any)) != 4 {
		t.Errorf("pii %v", pii)
	}
	failed := body["failed"].([]any)
	if len(failed) != 1 || !strings.Contains(failed[0].(map[string]any)["reason"].(string), "golden mismatch") {
		t.Errorf("failed %v", failed)
	}
	skipped := body["skipped"].([]any)
	reasons := map[string]string{}
	for _, s := range skipped {
		sm := s.(map[string]any)
		reasons[sm["id"].(string)] = sm["reason"].(string)
	}
	if !strings.Contains(reasons["broken"], "invalid manifest") || !strings.Contains(reasons["base"], "no lorakit.json") {
		t.Errorf("skipped %v", skipped)
	}
	if tasks := body["tasks"].(map[string]any); tasks["intent"] != "intent_bert" || len(tasks) != 3 {
		t.Errorf("tasks %v", tasks)
	}
}

// A refused bert model hands its task to the next candidate by priority.
func TestRefusedWinnerFallsBackToNextCandidate(t *testing.T) {
	h := loaded(t, &fakeLoader{refuse: map[string]string{"intent_bert": "parity check failed"}})
	status, body := h.do("POST", "/api/v1/classify", `{"text": "music", "task": "intent"}`)
	if status != 200 || body["model"] != "intent_roberta" {
		t.Errorf("%d %v", status, body)
	}
}

func TestMetrics(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	h.do("POST", "/api/v1/classify", `{"text": "music", "task": "intent"}`)
	h.do("POST", "/api/v1/classify", `{"text": "music", "task": "nope"}`)
	h.do("POST", "/api/v1/classify/batch", `{"texts": ["a", "b"], "task_type": "all"}`)
	h.do("GET", "/nowhere", "")
	h.do("GET", "/user/supplied/path/42", "")
	m := h.metrics()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"lorakit_router_requests_total", map[string]string{"route": "/api/v1/classify", "code": "200"}, 1},
		{"lorakit_router_requests_total", map[string]string{"route": "/api/v1/classify", "code": "404"}, 1},
		{"lorakit_router_requests_total", map[string]string{"route": "/api/v1/classify/batch", "code": "200"}, 1},
		{"lorakit_router_requests_total", map[string]string{"route": "unmatched", "code": "404"}, 2},
		{"lorakit_router_request_duration_seconds", map[string]string{"route": "/api/v1/classify"}, 2},
		{"lorakit_router_request_duration_seconds", map[string]string{"route": "/api/v1/classify/batch"}, 1},
		// One core call per model: the single classify, then "all" runs intent_bert, jailbreak and pii once each.
		{"lorakit_router_inference_duration_seconds", map[string]string{"model": "intent_bert"}, 2},
		{"lorakit_router_inference_duration_seconds", map[string]string{"model": "pii"}, 1},
		{"lorakit_router_texts_classified_total", map[string]string{"task": "intent"}, 3},
		{"lorakit_router_texts_classified_total", map[string]string{"task": "pii"}, 2},
		{"lorakit_router_reloads_total", map[string]string{"result": "success"}, 1},
		{"lorakit_router_reloads_total", map[string]string{"result": "failure"}, 0},
		{"lorakit_router_models_loaded", nil, 4},
		{"lorakit_router_tasks_served", nil, 3},
		{"lorakit_router_generation", nil, 1},
	} {
		if got, ok := m.value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// Raw paths never become label values; model labels are loaded model ids only.
	for _, v := range m.labelValues("lorakit_router_requests_total", "route") {
		if strings.Contains(v, "nowhere") || strings.Contains(v, "user") {
			t.Errorf("route label %q comes from a raw URL path", v)
		}
	}
	for _, v := range m.labelValues("lorakit_router_inference_duration_seconds", "model") {
		if !map[string]bool{"intent_bert": true, "intent_roberta": true, "jailbreak": true, "pii": true}[v] {
			t.Errorf("model label %q is not a loaded model", v)
		}
	}
	// The standard process and Go runtime collectors are registered.
	for _, name := range []string{"process_cpu_seconds_total", "go_goroutines", "lorakit_router_uptime_seconds"} {
		if _, ok := m[name]; !ok {
			t.Errorf("metrics lack %s", name)
		}
	}
}

// A reload deletes the series of models and tasks it no longer serves, so label values stay the loaded set.
func TestMetricsForgetModelsThatLeft(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	h.do("POST", "/api/v1/classify", `{"text": "x", "task": "pii"}`)
	if _, ok := h.metrics().value("lorakit_router_inference_duration_seconds", map[string]string{"model": "pii"}); !ok {
		t.Fatal("no inference series for pii")
	}
	if err := os.RemoveAll(filepath.Join(h.root, "pii")); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := h.metrics()
	if _, ok := m.value("lorakit_router_inference_duration_seconds", map[string]string{"model": "pii"}); ok {
		t.Error("the inference series of a removed model survived the reload")
	}
	if _, ok := m.value("lorakit_router_texts_classified_total", map[string]string{"task": "pii"}); ok {
		t.Error("the texts series of a removed task survived the reload")
	}
	if got, _ := m.value("lorakit_router_models_loaded", nil); got != 3 {
		t.Errorf("models loaded %v", got)
	}
}
