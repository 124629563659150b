package router_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/router"
)

func TestHealthAndNoModels(t *testing.T) {
	empty := t.TempDir()
	h := newHarness(t, empty, &fakeLoader{}, router.Limits{})
	status, body := h.do("GET", "/health", "")
	if status != 503 || body["status"] != "no_models" {
		t.Errorf("before load: %d %v", status, body)
	}
	status, body = h.do("POST", "/api/v1/classify", `{"text": "x", "task": "intent"}`)
	if status != 503 || errorCode(t, body) != "no_models" {
		t.Errorf("classify before load: %d %v", status, body)
	}
	if err := h.srv.Reload(context.Background()); err != nil { // an empty root is a valid, empty generation
		t.Fatal(err)
	}
	status, body = h.do("GET", "/health", "")
	if status != 503 || body["generation"].(float64) != 1 {
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
	status, raw := h.raw("GET", "/metrics", "")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	text := string(raw)
	for _, want := range []string{
		`lorakit_router_requests_total{route="classify",code="200"} 1`,
		`lorakit_router_requests_total{route="classify",code="404"} 1`,
		`lorakit_router_requests_total{route="classify_batch",code="200"} 1`,
		`lorakit_router_requests_total{route="other",code="404"} 1`,
		`lorakit_router_request_duration_seconds_bucket{route="classify",le="+Inf"} 2`,
		`lorakit_router_request_duration_seconds_count{route="classify_batch"} 1`,
		`lorakit_router_texts_classified_total{task="intent"} 3`,
		`lorakit_router_texts_classified_total{task="pii"} 2`,
		`lorakit_router_reloads_total{result="success"} 1`,
		`lorakit_router_reloads_total{result="failure"} 0`,
		`lorakit_router_models_loaded 4`,
		`lorakit_router_tasks_served 3`,
		`lorakit_router_generation 1`,
		"# TYPE lorakit_router_request_duration_seconds histogram",
	} {
		if !strings.Contains(text, want+"\n") && !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Every sample line is "name{labels} value" or "name value".
	sample := regexp.MustCompile(`^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$`)
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(line, "#") && !sample.MatchString(line) {
			t.Errorf("malformed sample line %q", line)
		}
	}
	// Buckets are cumulative.
	bucket := regexp.MustCompile(`lorakit_router_request_duration_seconds_bucket\{route="classify",le="[^"]+"\} (\d+)`)
	prev := "0"
	for _, m := range bucket.FindAllStringSubmatch(text, -1) {
		if len(m[1]) < len(prev) || (len(m[1]) == len(prev) && m[1] < prev) {
			t.Errorf("bucket counts decrease: %s after %s", m[1], prev)
		}
		prev = m[1]
	}
}
