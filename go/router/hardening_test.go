package router_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/discovery/discoverytest"
	"github.com/lorakit/lorakit/go/router"
)

// modelRoutes are the routes that run a model, each with a request that is valid in shape.
var modelRoutes = []struct{ path, body string }{
	{"/api/v1/classify", `{"text": "hi", "task": "intent"}`},
	{"/api/v1/classify/batch", `{"texts": ["hi"], "task_type": "intent"}`},
	{"/api/v1/classify/batch", `{"texts": ["hi"], "task_type": "all"}`},
	{"/api/v1/classify/intent", `{"text": "hi"}`},
	{"/api/v1/classify/pii", `{"text": "hi"}`},
	{"/api/v1/classify/security", `{"text": "hi"}`},
	{"/api/v1/embed", `{"texts": ["hi"]}`},
	{"/api/v1/similarity", `{"texts_a": ["hi"], "texts_b": ["ho"]}`},
	{"/predict", `{"inputs": "hi"}`},
	{"/embed", `{"inputs": "hi"}`},
	{"/api/v1/predict_fewshot", `{"text": "hi"}`},
}

// A generation in which every directory was skipped serves nothing: every model route answers 503
// no_models (as before the first load), not 404 for a name that could never be right.
func TestEmptyGenerationAnswers503(t *testing.T) {
	root := t.TempDir()
	discoverytest.WriteModel(t, root, "broken", discoverytest.Spec{Labels: []string{"a", "b"}})
	if err := os.WriteFile(filepath.Join(root, "broken", "lorakit.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, root, &fakeLoader{}, router.Limits{})
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, rt := range modelRoutes {
		status, body := h.do("POST", rt.path, rt.body)
		if status != 503 || errorCode(t, body) != "no_models" {
			t.Errorf("%s %s: %d %v, want 503 no_models", rt.path, rt.body, status, body)
		}
		msg := body["error"].(map[string]any)["message"].(string)
		if !strings.Contains(msg, "1 skipped") {
			t.Errorf("%s: message %q does not count the skipped directory", rt.path, msg)
		}
	}
	// The listing still answers, and says why nothing is served.
	status, body := h.do("GET", "/api/v1/models", "")
	if status != 200 || len(body["skipped"].([]any)) != 1 {
		t.Errorf("/api/v1/models: %d %v", status, body)
	}
}

// A null inside a list of texts is refused (400 invalid_request naming its index), never classified as "".
func TestNullTextsAreRefused(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	cases := []struct{ path, body string }{
		{"/api/v1/classify/batch", `{"texts": ["a", null], "task_type": "intent"}`},
		{"/api/v1/classify/batch", `{"texts": [null], "task_type": "all"}`},
		{"/api/v1/embed", `{"texts": ["a", null]}`},
		{"/api/v1/similarity", `{"texts_a": ["a"], "texts_b": [null]}`},
		{"/predict", `{"inputs": [null]}`},
		{"/predict", `{"inputs": [["a"], [null]]}`},
		{"/embed", `{"inputs": ["a", null]}`},
		{"/api/v1/predict_fewshot", `{"text": "a", "examples": [null]}`},
	}
	for _, c := range cases {
		status, body := h.do("POST", c.path, c.body)
		if status != 400 || errorCode(t, body) != "invalid_request" {
			t.Errorf("%s %s: %d %v, want 400 invalid_request", c.path, c.body, status, body)
			continue
		}
		if msg := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "is null") {
			t.Errorf("%s %s: message %q does not say which text is null", c.path, c.body, msg)
		}
	}
	// A null list is still "missing", not a null text.
	status, body := h.do("POST", "/api/v1/classify/batch", `{"texts": null, "task_type": "intent"}`)
	if status != 400 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "texts is required") {
		t.Errorf("null list: %d %v", status, body)
	}
}

// A model copied file by file, manifest first (cp -r, rsync without a temporary name), is skipped by the
// reload its manifest triggers and served by a later poll once its last file has landed.
func TestPollServesAModelCopiedManifestFirst(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	src := discoverytest.WriteModel(t, t.TempDir(), "sentiment", discoverytest.Spec{Name: "sentiment", Labels: []string{"neg", "pos"}})
	dst := filepath.Join(h.root, "sentiment")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile := func(name string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	polled := make(chan struct{})
	defer func() { cancel(); <-polled }()
	go func() {
		h.srv.Poll(ctx, 5*time.Millisecond)
		close(polled)
	}()
	copyFile("lorakit.json")
	waitFor(t, "the manifest to trigger a reload", func() bool { return h.srv.Generation() == 2 })
	if status, body := h.do("POST", "/api/v1/classify", `{"text": "pos", "task": "sentiment"}`); status != 404 {
		t.Fatalf("incomplete model served: %d %v", status, body)
	}
	for _, name := range []string{"config.json", "tokenizer.json", "model.safetensors"} {
		copyFile(name)
	}
	waitFor(t, "poll to serve the completed model", func() bool {
		status, _ := h.do("POST", "/api/v1/classify", `{"text": "pos", "task": "sentiment"}`)
		return status == 200
	})
}

// Field names are matched exactly: encoding/json alone would take "teXts" for "texts" (found by
// FuzzHTTPDecoding), answering 200 to a request the API document calls invalid.
func TestFieldNamesAreCaseSensitive(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	cases := []struct{ path, body, field string }{
		{"/api/v1/classify/batch", `{"teXts": ["00"], "tAsk_tYpe": "intent"}`, "tAsk_tYpe"}, // the first in sorted order
		{"/api/v1/classify", `{"text": "a", "task": "intent", "options": {"Return_Probabilities": true}}`, "Return_Probabilities"},
		{"/api/v1/classify/intent", `{"Text": "a"}`, "Text"},
		{"/predict", `{"Inputs": "a"}`, "Inputs"},
	}
	for _, c := range cases {
		status, body := h.do("POST", c.path, c.body)
		if status != 400 || errorCode(t, body) != "invalid_json" {
			t.Errorf("%s %s: %d %v, want 400 invalid_json", c.path, c.body, status, body)
			continue
		}
		if msg := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, c.field) {
			t.Errorf("%s: message %q does not name %s", c.path, msg, c.field)
		}
	}
	if status, body := h.do("POST", "/api/v1/classify", `{"text": "a", "task": "intent", "options": {"return_probabilities": true}}`); status != 200 {
		t.Errorf("exact names refused: %d %v", status, body)
	}
}

// A load that does not finish within LoadTimeout fails the reload with ErrLoadTimeout (the current
// generation keeps serving), and what the abandoned load produces later is closed, never served.
func TestLoadTimeoutKeepsTheCurrentGeneration(t *testing.T) {
	loader := &fakeLoader{}
	h := newHarnessWith(t, testRoot(t), loader, func(c *router.Config) { c.LoadTimeout = 100 * time.Millisecond })
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	loader.set(func(l *fakeLoader) { l.loadGate = gate })
	start := time.Now()
	err := h.srv.Reload(context.Background())
	if !errors.Is(err, router.ErrLoadTimeout) || !strings.Contains(err.Error(), "100ms") {
		t.Fatalf("stuck load: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("reload returned after %s", elapsed)
	}
	if status, _ := h.do("POST", "/api/v1/classify", `{"text": "weather", "task": "intent"}`); status != 200 || h.srv.Generation() != 1 {
		t.Errorf("current generation: %d, generation %d", status, h.srv.Generation())
	}
	close(gate)
	waitFor(t, "the abandoned load to be closed", func() bool {
		loader.mu.Lock()
		n := len(loader.built)
		loader.mu.Unlock()
		return n == 2 && allClosed(loader.generation(1))
	})
	if h.srv.Generation() != 1 {
		t.Errorf("abandoned load was served: generation %d", h.srv.Generation())
	}
}
