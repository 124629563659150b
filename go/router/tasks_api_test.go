package router_test

import (
	"context"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery/discoverytest"
	"github.com/lorakit/lorakit/go/router"
)

// taskRoot writes a models root with every task kind: guard (sequence classification with unsafe labels),
// topic (without), names (token classification) and embedder (embedding), plus extra models.
func taskRoot(t *testing.T, extra ...string) string {
	t.Helper()
	root := t.TempDir()
	discoverytest.WriteModel(t, root, "guard", discoverytest.Spec{Labels: []string{"benign", "jailbreak"},
		UnsafeLabels: []string{"jailbreak"}})
	discoverytest.WriteModel(t, root, "topic", discoverytest.Spec{Labels: []string{"sport", "music"}})
	discoverytest.WriteModel(t, root, "names", discoverytest.Spec{Task: "token_classification",
		Labels: []string{"O", "B-NAME", "I-NAME"}})
	discoverytest.WriteModel(t, root, "embedder", discoverytest.Spec{Task: "embedding", Labels: []string{}})
	for _, id := range extra {
		discoverytest.WriteModel(t, root, id, discoverytest.Spec{Task: "embedding", Labels: []string{}})
	}
	return root
}

func loadedTasks(t *testing.T, loader *fakeLoader, limits router.Limits, extra ...string) *harness {
	t.Helper()
	h := newHarness(t, taskRoot(t, extra...), loader, limits)
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

func results(t *testing.T, body map[string]any) []map[string]any {
	t.Helper()
	raw, ok := body["results"].([]any)
	if !ok {
		t.Fatalf("no results: %v", body)
	}
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i] = r.(map[string]any)
	}
	return out
}

func TestBatchTokenClassificationAnswersEntities(t *testing.T) {
	h := loadedTasks(t, &fakeLoader{}, router.Limits{})
	status, body := h.do("POST", "/api/v1/classify/batch", `{"texts": ["ask Zoë in Örebro", "nobody here"], "task_type": "names"}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	items := results(t, body)
	want := []any{
		map[string]any{"type": "NAME", "start": 4.0, "end": 7.0, "text": "Zoë", "score": 0.9},
		map[string]any{"type": "NAME", "start": 11.0, "end": 17.0, "text": "Örebro", "score": 0.9},
	}
	if !reflect.DeepEqual(items[0]["entities"], want) || items[0]["model"] != "names" || items[0]["tokens_used"] != 6.0 {
		t.Errorf("result 0: %v", items[0])
	}
	if e, ok := items[1]["entities"].([]any); !ok || len(e) != 0 {
		t.Errorf("a text without entities answers an empty list: %v", items[1])
	}
	for _, field := range []string{"label", "predicted_label", "confidence", "below_threshold", "unsafe"} {
		if _, ok := items[0][field]; ok {
			t.Errorf("token classification answers no %s: %v", field, items[0])
		}
	}
	// The single route serves token classification too.
	status, body = h.do("POST", "/api/v1/classify", `{"text": "hi Ada", "task": "names"}`)
	if e, _ := body["entities"].([]any); status != http.StatusOK || len(e) != 1 {
		t.Errorf("single: %d %v", status, body)
	}
}

func TestBatchUnsafeVerdictsOnlyWhenDeclared(t *testing.T) {
	h := loadedTasks(t, &fakeLoader{}, router.Limits{})
	_, body := h.do("POST", "/api/v1/classify/batch", `{"texts": ["a jailbreak attempt", "hello"], "task_type": "guard"}`)
	items := results(t, body)
	if items[0]["unsafe"] != true || math.Abs(items[0]["unsafe_score"].(float64)-0.9) > 1e-6 {
		t.Errorf("unsafe text: %v", items[0])
	}
	if items[1]["unsafe"] != false || math.Abs(items[1]["unsafe_score"].(float64)-0.5) > 1e-6 {
		t.Errorf("uniform text (benign wins the tie): %v", items[1])
	}
	_, body = h.do("POST", "/api/v1/classify/batch", `{"texts": ["music"], "task_type": "topic"}`)
	if item := results(t, body)[0]; item["label"] != "music" || item["unsafe"] != nil || item["unsafe_score"] != nil {
		t.Errorf("undeclared: %v", item)
	}
	if _, entities := results(t, body)[0]["entities"]; entities {
		t.Error("sequence classification answers no entities")
	}
}

func TestBatchAllRunsEveryClassifierButNoEmbedder(t *testing.T) {
	h := loadedTasks(t, &fakeLoader{}, router.Limits{})
	status, body := h.do("POST", "/api/v1/classify/batch", `{"texts": ["Ada plays music"], "task_type": "all"}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	tasks := results(t, body)[0]["tasks"].(map[string]any)
	if len(tasks) != 3 || tasks["guard"] == nil || tasks["topic"] == nil || tasks["names"] == nil {
		t.Fatalf("tasks %v", tasks)
	}
	if e := tasks["names"].(map[string]any)["entities"].([]any); len(e) != 1 {
		t.Errorf("names: %v", tasks["names"])
	}
	if timing := body["timing"].(map[string]any)["tasks"].([]any); len(timing) != 3 {
		t.Errorf("timing %v", timing)
	}
	status, body = h.do("POST", "/api/v1/classify/batch", `{"texts": ["x"], "task_type": "embedder"}`)
	if status != http.StatusBadRequest || errorCode(t, body) != "invalid_request" ||
		!strings.Contains(body["error"].(map[string]any)["message"].(string), "/api/v1/embed") {
		t.Errorf("classify on an embedding model: %d %v", status, body)
	}
}

func TestEmbedDefaultsToTheOnlyEmbeddingModel(t *testing.T) {
	h := loadedTasks(t, &fakeLoader{}, router.Limits{})
	status, body := h.do("POST", "/api/v1/embed", `{"texts": ["aab", "b"]}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	want := []any{[]any{2.0, 1.0, 1.0}, []any{0.0, 1.0, 1.0}}
	if !reflect.DeepEqual(body["embeddings"], want) || body["model"] != "embedder" || body["dim"] != 3.0 ||
		body["task"] != "embedder" || body["generation"] != 1.0 {
		t.Errorf("answer %v", body)
	}
	status, body = h.do("POST", "/api/v1/embed", `{"texts": ["a"], "model": "embedder"}`)
	if status != http.StatusOK || body["model"] != "embedder" {
		t.Errorf("named: %d %v", status, body)
	}
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"texts": ["a"], "model": "guard"}`, http.StatusBadRequest, "invalid_request"},
		{`{"texts": ["a"], "model": "nope"}`, http.StatusNotFound, "unknown_task"},
		{`{"texts": []}`, http.StatusBadRequest, "invalid_request"},
		{`{"texts": ["a"], "modle": "x"}`, http.StatusBadRequest, "invalid_json"},
		{`{"texts": ["a", "b", "c"]}`, http.StatusRequestEntityTooLarge, "batch_too_large"},
		{`{"texts": ["` + strings.Repeat("a", 65) + `"]}`, http.StatusRequestEntityTooLarge, "text_too_large"},
	} {
		h2 := h
		if c.status == http.StatusRequestEntityTooLarge {
			h2 = loadedTasks(t, &fakeLoader{}, router.Limits{MaxBatch: 2, MaxTextBytes: 64})
		}
		status, body := h2.do("POST", "/api/v1/embed", c.body)
		if status != c.status || errorCode(t, body) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.body, status, body, c.status, c.code)
		}
	}
}

func TestEmbedWithSeveralModelsNeedsAName(t *testing.T) {
	h := loadedTasks(t, &fakeLoader{}, router.Limits{}, "embedder_b")
	status, body := h.do("POST", "/api/v1/embed", `{"texts": ["a"]}`)
	msg, _ := body["error"].(map[string]any)["message"].(string)
	if status != http.StatusBadRequest || errorCode(t, body) != "invalid_request" || !strings.Contains(msg, "embedder, embedder_b") {
		t.Errorf("ambiguous: %d %v", status, body)
	}
	if status, body := h.do("POST", "/api/v1/embed", `{"texts": ["a"], "model": "embedder_b"}`); status != http.StatusOK || body["model"] != "embedder_b" {
		t.Errorf("named: %d %v", status, body)
	}
	// Without any embedding model the route has nothing to serve.
	none := loaded(t, &fakeLoader{})
	if status, body := none.do("POST", "/api/v1/embed", `{"texts": ["a"]}`); status != http.StatusServiceUnavailable || errorCode(t, body) != "no_models" {
		t.Errorf("no embedding model: %d %v", status, body)
	}
}

func TestSimilarityIsTheRealCosine(t *testing.T) {
	h := loadedTasks(t, &fakeLoader{}, router.Limits{MaxBatch: 4})
	status, body := h.do("POST", "/api/v1/similarity", `{"texts_a": ["aa", "a"], "texts_b": ["aa", "b"]}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	// (2,0,1)·(2,0,1) has dot 5 but cosine 1; (1,0,1)·(0,1,1) has cosine 1/2.
	scores := body["scores"].([]any)
	if len(scores) != 2 || math.Abs(scores[0].(float64)-1) > 1e-9 || math.Abs(scores[1].(float64)-0.5) > 1e-9 {
		t.Errorf("scores %v", scores)
	}
	if body["model"] != "embedder" || body["dim"] != 3.0 {
		t.Errorf("answer %v", body)
	}
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"texts_a": ["a"], "texts_b": ["a", "b"]}`, http.StatusBadRequest, "invalid_request"},
		{`{"texts_a": [], "texts_b": []}`, http.StatusBadRequest, "invalid_request"},
		{`{"texts_a": ["a"]}`, http.StatusBadRequest, "invalid_request"},
		{`{"texts_a": ["a", "b", "c"], "texts_b": ["a", "b", "c"]}`, http.StatusRequestEntityTooLarge, "batch_too_large"},
		{`{"texts_a": ["a"], "texts_b": ["b"], "model": "names"}`, http.StatusBadRequest, "invalid_request"},
	} {
		status, body := h.do("POST", "/api/v1/similarity", c.body)
		if status != c.status || errorCode(t, body) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.body, status, body, c.status, c.code)
		}
	}
	if status, body := h.do("GET", "/api/v1/similarity", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d %v", status, body)
	}
}

func TestNonFiniteTaskOutputsAreRefused(t *testing.T) {
	h := loadedTasks(t, &fakeLoader{behaviour: map[string]string{"names": "nan", "embedder": "nan"}}, router.Limits{})
	for path, body := range map[string]string{
		"/api/v1/classify/batch": `{"texts": ["Ada"], "task_type": "names"}`,
		"/api/v1/embed":          `{"texts": ["a"]}`,
		"/api/v1/similarity":     `{"texts_a": ["a"], "texts_b": ["b"]}`,
	} {
		status, answer := h.do("POST", path, body)
		if status != http.StatusInternalServerError || errorCode(t, answer) != "invalid_model_output" {
			t.Errorf("%s: %d %v", path, status, answer)
		}
	}
	h = loadedTasks(t, &fakeLoader{behaviour: map[string]string{"embedder": "input_error"}}, router.Limits{})
	if status, answer := h.do("POST", "/api/v1/embed", `{"texts": ["a"]}`); status != http.StatusBadRequest || errorCode(t, answer) != "invalid_input" {
		t.Errorf("input error: %d %v", status, answer)
	}
}

func TestModelsListTaskOutputsAndMetricsCountEmbeddings(t *testing.T) {
	h := loadedTasks(t, &fakeLoader{}, router.Limits{})
	_, body := h.do("GET", "/api/v1/models", "")
	byID := map[string]map[string]any{}
	for _, m := range body["models"].([]any) {
		byID[m.(map[string]any)["id"].(string)] = m.(map[string]any)
	}
	if m := byID["guard"]; !reflect.DeepEqual(m["unsafe_labels"], []any{"jailbreak"}) || m["dim"] != nil {
		t.Errorf("guard: %v", m)
	}
	if m := byID["names"]; m["kind"] != "token_classification" || len(m["labels"].([]any)) != 3 {
		t.Errorf("names: %v", m)
	}
	if m := byID["embedder"]; m["kind"] != "embedding" || m["dim"] != 3.0 || len(m["labels"].([]any)) != 0 {
		t.Errorf("embedder: %v", m)
	}
	h.do("POST", "/api/v1/embed", `{"texts": ["a", "b"]}`)
	h.do("POST", "/api/v1/similarity", `{"texts_a": ["a"], "texts_b": ["b"]}`)
	h.do("POST", "/api/v1/classify/batch", `{"texts": ["Ada"], "task_type": "names"}`)
	m := h.metrics()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"lorakit_router_texts_embedded_total", map[string]string{"task": "embedder"}, 4},
		{"lorakit_router_texts_classified_total", map[string]string{"task": "names"}, 1},
		{"lorakit_router_requests_total", map[string]string{"route": "/api/v1/embed", "code": "200"}, 1},
		{"lorakit_router_requests_total", map[string]string{"route": "/api/v1/similarity", "code": "200"}, 1},
		{"lorakit_router_inference_duration_seconds", map[string]string{"model": "embedder"}, 2},
	} {
		if got, ok := m.value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}
