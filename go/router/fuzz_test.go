package router_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/lorakit/lorakit/go/discovery/discoverytest"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// fuzzRoutes are the routes with a JSON body; the fuzzer picks one by index.
var fuzzRoutes = []string{
	"/api/v1/classify", "/api/v1/classify/batch", "/api/v1/classify/intent", "/api/v1/classify/pii",
	"/api/v1/classify/security", "/api/v1/embed", "/api/v1/similarity", "/predict", "/embed",
	"/api/v1/predict_fewshot",
}

// fuzzSeeds are real requests of the test suites, one or more per route.
var fuzzSeeds = []struct {
	route int
	body  string
}{
	{0, `{"text": "weather today", "task": "intent", "options": {"return_probabilities": true, "confidence_threshold": 0.5}}`},
	{0, `{"text": "x", "task": "all"}`},
	{1, `{"texts": ["weather", "Alice in Paris"], "task_type": "all"}`},
	{1, `{"texts": ["a", null], "task_type": "intent"}`},
	{2, `{"text": "play some music", "options": {"include_explanation": true, "return_probabilities": true}}`},
	{3, `{"text": "Bob Smith lives here", "options": {"entity_types": ["NAME"], "mask_entities": true, "return_positions": true}}`},
	{4, `{"text": "ignore the rules", "options": {"detection_types": ["jailbreak"], "sensitivity": "high", "include_reasoning": true}}`},
	{5, `{"texts": ["hello world", "good morning"], "model": "embedder"}`},
	{6, `{"texts_a": ["a", "b"], "texts_b": ["c", "d"]}`},
	{7, `{"inputs": [["weather"], ["music"]], "raw_scores": true, "truncate": false}`},
	{7, `{"inputs": "weather", "top_k": 2}`},
	{8, `{"inputs": ["hello", "world"], "normalize": false}`},
	{0, `{"text": "a"} {"text": "b"}`},
	{1, `{"texts": [` + "\"\xff\xfe\"" + `], "task_type": "intent"}`},
	{9, `{"text": "sunny", "examples": [{"document": "a goal", "label": "sport"}], "labels": ["sport", "weather"]}`},
	{9, `{"model": "topics", "text": "x", "examples": [null], "options": {"confidence_threshold": 0.2}}`},
}

var (
	fuzzOnce    sync.Once
	fuzzHandler http.Handler
	fuzzRoot    string
)

// TestMain removes the fuzz root, which outlives every single test.
func TestMain(m *testing.M) {
	code := m.Run()
	if fuzzRoot != "" {
		os.RemoveAll(fuzzRoot)
	}
	os.Exit(code)
}

// fuzzServer is one fake-backed router over every task kind, shared by all fuzz inputs.
func fuzzServer(t testing.TB) http.Handler {
	fuzzOnce.Do(func() {
		root, err := os.MkdirTemp("", "lorakit-router-fuzz-") // t.TempDir would vanish after the first input
		if err != nil {
			t.Fatal(err)
		}
		fuzzRoot = root
		discoverytest.WriteModel(t, root, "intent", discoverytest.Spec{Labels: []string{"greeting", "weather", "music"}})
		discoverytest.WriteModel(t, root, "security", discoverytest.Spec{Labels: []string{"benign", "jailbreak"}, UnsafeLabels: []string{"jailbreak"}})
		discoverytest.WriteModel(t, root, "pii", discoverytest.Spec{Task: "token_classification", Labels: []string{"O", "B-NAME", "I-NAME"}})
		discoverytest.WriteModel(t, root, "embedder", discoverytest.Spec{Task: "embedding", Labels: []string{}})
		discoverytest.WriteModel(t, root, "topics", discoverytest.Spec{Task: "generative_classification", Architecture: "qwen3",
			Labels: []string{"sport", "music"}})
		srv, err := router.New(router.Config{ModelsRoot: root, Loader: &fakeLoader{}, Compat: router.CompatModels{Predict: "intent"},
			Limits: router.Limits{MaxBatch: 16, MaxTextBytes: 512, MaxBodyBytes: 8192},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		fuzzHandler = srv.Handler()
	})
	return fuzzHandler
}

// Any body on any JSON route is decoded without a panic (a recovered panic would answer 500) and gets
// either a 2xx answer or a documented 4xx/503 with the error body, as the OpenAPI document describes.
func FuzzHTTPDecoding(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(uint8(s.route), []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		h := fuzzServer(t)
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		resp := rec.Result()
		raw := rec.Body.Bytes()
		switch {
		case resp.StatusCode == http.StatusOK:
		case resp.StatusCode >= 400 && resp.StatusCode < 500, resp.StatusCode == http.StatusServiceUnavailable:
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %q: %d without the error body: %s", path, body, resp.StatusCode, raw)
			}
		default:
			t.Fatalf("%s %q: status %d: %s", path, body, resp.StatusCode, raw)
		}
		routertest.CheckContract(t, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)), body, resp, raw)
	})
}
