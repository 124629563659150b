package router_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery/discoverytest"
	"github.com/lorakit/lorakit/go/router"
)

// generativeRoot is taskRoot plus the generative models named (labels sport, music).
func generativeRoot(t *testing.T, ids ...string) string {
	t.Helper()
	root := taskRoot(t)
	for _, id := range ids {
		discoverytest.WriteModel(t, root, id, discoverytest.Spec{Task: "generative_classification", Architecture: "qwen3",
			Labels: []string{"sport", "music"}})
	}
	return root
}

func loadedGenerative(t *testing.T, loader *fakeLoader, limits router.Limits, ids ...string) *harness {
	t.Helper()
	h := newHarness(t, generativeRoot(t, ids...), loader, limits)
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestFewShotDefaultLabelsAddNewExampleLabels(t *testing.T) {
	h := loadedGenerative(t, &fakeLoader{}, router.Limits{}, "topics")
	status, body := h.do("POST", "/api/v1/predict_fewshot", `{"text": "sunny all week",
		"examples": [{"document": "a goal at the end", "label": "sport"}, {"document": "rain again", "label": "weather"}]}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	if !reflect.DeepEqual(body["labels"], []any{"sport", "music", "weather"}) {
		t.Errorf("labels %v, want the model's then the new example label", body["labels"])
	}
	if body["label"] != "weather" || body["predicted_label"] != "weather" || body["task"] != "topics" || body["model"] != "topics" {
		t.Errorf("answer %v", body)
	}
	probs := body["probabilities"].(map[string]any)
	scores := body["scores"].(map[string]any)
	total := 0.0
	for _, l := range []string{"sport", "music", "weather"} {
		p := probs[l].(float64)
		total += p
		if math.Abs(math.Log(p)-scores[l].(float64)) > 1e-5 {
			t.Errorf("%s: score %v is not the log of probability %v", l, scores[l], p)
		}
	}
	if math.Abs(total-1) > 1e-5 || math.Abs(body["confidence"].(float64)-0.9) > 1e-6 {
		t.Errorf("probabilities %v sum to %v, confidence %v", probs, total, body["confidence"])
	}
	if body["examples"] != 2.0 || body["tokens_in"] != 5.0 || body["generation"] != 1.0 {
		t.Errorf("examples %v tokens_in %v generation %v", body["examples"], body["tokens_in"], body["generation"])
	}
	// Without examples the fake is uniform over the model's labels: the examples are what decided.
	_, body = h.do("POST", "/api/v1/predict_fewshot", `{"text": "sunny all week"}`)
	if !reflect.DeepEqual(body["labels"], []any{"sport", "music"}) || body["confidence"] != 0.5 || body["examples"] != 0.0 {
		t.Errorf("zero-shot: %v", body)
	}
}

func TestFewShotRequestLabelsAndThreshold(t *testing.T) {
	h := loadedGenerative(t, &fakeLoader{}, router.Limits{}, "topics")
	status, body := h.do("POST", "/api/v1/predict_fewshot", `{"model": "topics", "text": "a cat and a dog",
		"labels": ["bird", "dog", "fish"], "examples": [{"document": "tweet", "label": "bird"}]}`)
	if status != http.StatusOK || body["label"] != "dog" || !reflect.DeepEqual(body["labels"], []any{"bird", "dog", "fish"}) {
		t.Fatalf("%d %v", status, body)
	}
	_, body = h.do("POST", "/api/v1/predict_fewshot", `{"text": "a cat", "labels": ["bird", "dog", "fish"],
		"options": {"confidence_threshold": 0.5}}`)
	if body["label"] != "unknown" || body["below_threshold"] != true || body["predicted_label"] != "bird" {
		t.Errorf("below the threshold: %v", body)
	}
}

func TestFewShotModelResolution(t *testing.T) {
	h := loadedGenerative(t, &fakeLoader{}, router.Limits{}, "topics", "topics_b")
	cases := []struct {
		body   string
		status int
		code   string
	}{
		{`{"text": "x"}`, http.StatusBadRequest, "invalid_request"}, // two generative models: name one
		{`{"model": "nope", "text": "x"}`, http.StatusNotFound, "unknown_task"},
		{`{"model": "topic", "text": "x"}`, http.StatusBadRequest, "invalid_request"}, // a sequence classifier
		{`{"model": "embedder", "text": "x"}`, http.StatusBadRequest, "invalid_request"},
	}
	for _, c := range cases {
		status, body := h.do("POST", "/api/v1/predict_fewshot", c.body)
		if status != c.status || errorCode(t, body) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.body, status, body, c.status, c.code)
		}
	}
	if status, body := h.do("POST", "/api/v1/predict_fewshot", `{"model": "topics_b", "text": "music"}`); status != 200 || body["model"] != "topics_b" {
		t.Errorf("named: %d %v", status, body)
	}
	// No generative model loaded at all.
	h = loadedTasks(t, &fakeLoader{}, router.Limits{})
	if status, body := h.do("POST", "/api/v1/predict_fewshot", `{"text": "x"}`); status != http.StatusServiceUnavailable || errorCode(t, body) != "no_models" {
		t.Errorf("none loaded: %d %v", status, body)
	}
}

func TestFewShotRefusesBadRequests(t *testing.T) {
	h := loadedGenerative(t, &fakeLoader{}, router.Limits{MaxExamples: 2, MaxLabels: 3, MaxTextBytes: 32}, "topics")
	long := strings.Repeat("x", 33)
	cases := map[string]struct {
		body   string
		status int
		code   string
	}{
		"no text":              {`{"examples": []}`, 400, "invalid_request"},
		"null text":            {`{"text": null}`, 400, "invalid_request"},
		"null example":         {`{"text": "x", "examples": [null]}`, 400, "invalid_request"},
		"example no label":     {`{"text": "x", "examples": [{"document": "d"}]}`, 400, "invalid_request"},
		"example no document":  {`{"text": "x", "examples": [{"label": "sport"}]}`, 400, "invalid_request"},
		"example empty label":  {`{"text": "x", "examples": [{"document": "d", "label": ""}]}`, 400, "invalid_request"},
		"example extra field":  {`{"text": "x", "examples": [{"document": "d", "label": "a", "why": 1}]}`, 400, "invalid_json"},
		"field case":           {`{"Text": "x"}`, 400, "invalid_json"},
		"example field case":   {`{"text": "x", "examples": [{"Document": "d", "label": "a"}]}`, 400, "invalid_json"},
		"unknown field":        {`{"text": "x", "shots": []}`, 400, "invalid_json"},
		"label not listed":     {`{"text": "x", "labels": ["a"], "examples": [{"document": "d", "label": "b"}]}`, 400, "invalid_request"},
		"duplicate labels":     {`{"text": "x", "labels": ["a", "a"]}`, 400, "invalid_request"},
		"empty labels":         {`{"text": "x", "labels": []}`, 400, "invalid_request"},
		"empty label":          {`{"text": "x", "labels": ["a", ""]}`, 400, "invalid_request"},
		"null label":           {`{"text": "x", "labels": ["a", null]}`, 400, "invalid_request"},
		"labels not strings":   {`{"text": "x", "labels": [1]}`, 400, "invalid_json"},
		"threshold":            {`{"text": "x", "options": {"confidence_threshold": 2}}`, 400, "invalid_request"},
		"return_probabilities": {`{"text": "x", "options": {"return_probabilities": true}}`, 400, "invalid_json"},
		"too many examples": {`{"text": "x", "examples": [{"document": "a", "label": "sport"}, {"document": "b", "label": "sport"},
			{"document": "c", "label": "sport"}]}`, 413, "batch_too_large"},
		"too many labels": {`{"text": "x", "labels": ["a", "b", "c", "d"]}`, 413, "batch_too_large"},
		// The model's two labels and two new example labels make four.
		"too many default labels": {`{"text": "x", "examples": [{"document": "a", "label": "p"}, {"document": "b", "label": "q"}]}`, 413, "batch_too_large"},
		"long text":               {fmt.Sprintf(`{"text": %q}`, long), 413, "text_too_large"},
		"long document":           {fmt.Sprintf(`{"text": "x", "examples": [{"document": %q, "label": "sport"}]}`, long), 413, "text_too_large"},
		"long label":              {fmt.Sprintf(`{"text": "x", "labels": [%q]}`, long), 413, "text_too_large"},
	}
	for name, c := range cases {
		status, body := h.do("POST", "/api/v1/predict_fewshot", c.body)
		if status != c.status || errorCode(t, body) != c.code {
			t.Errorf("%s: %d %v, want %d %s", name, status, body, c.status, c.code)
		}
	}
	if status, body := h.do("GET", "/api/v1/predict_fewshot", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d %v", status, body)
	}
}

func TestFewShotModelFailures(t *testing.T) {
	for behaviour, want := range map[string]struct {
		status int
		code   string
	}{
		"input_error": {400, "invalid_input"},
		"error":       {500, "model_error"},
		"nan":         {500, "invalid_model_output"},
		"short":       {500, "invalid_model_output"},
	} {
		h := loadedGenerative(t, &fakeLoader{behaviour: map[string]string{"topics": behaviour}}, router.Limits{}, "topics")
		status, body := h.do("POST", "/api/v1/predict_fewshot", `{"text": "x", "examples": [{"document": "d", "label": "sport"}]}`)
		if status != want.status || errorCode(t, body) != want.code {
			t.Errorf("%s: %d %v, want %d %s", behaviour, status, body, want.status, want.code)
		}
	}
}

// A generative model is also a classifier of its manifest labels on the classify routes, in "all", and listed
// by /api/v1/models with its kind; few-shot requests are counted like other classifications.
func TestGenerativeModelOnClassifyRoutesAndMetrics(t *testing.T) {
	h := loadedGenerative(t, &fakeLoader{}, router.Limits{}, "topics")
	status, body := h.do("POST", "/api/v1/classify", `{"text": "live music tonight", "task": "topics",
		"options": {"return_probabilities": true}}`)
	if status != http.StatusOK || body["label"] != "music" || len(body["probabilities"].(map[string]any)) != 2 {
		t.Fatalf("classify: %d %v", status, body)
	}
	status, body = h.do("POST", "/api/v1/classify/batch", `{"texts": ["sport"], "task_type": "all"}`)
	if status != http.StatusOK {
		t.Fatalf("all: %d %v", status, body)
	}
	tasks := results(t, body)[0]["tasks"].(map[string]any)
	if topics, ok := tasks["topics"].(map[string]any); !ok || topics["label"] != "sport" {
		t.Errorf("task_type all lacks the generative task: %v", tasks)
	}
	_, body = h.do("GET", "/api/v1/models", "")
	found := false
	for _, m := range body["models"].([]any) {
		if info := m.(map[string]any); info["id"] == "topics" {
			found = info["kind"] == "generative_classification" && info["task"] == "topics"
		}
	}
	if !found {
		t.Errorf("models: %v", body["models"])
	}
	h.do("POST", "/api/v1/predict_fewshot", `{"text": "x"}`)
	h.do("POST", "/api/v1/predict_fewshot", `{"text": "x", "labels": []}`)
	m := h.metrics()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"lorakit_router_texts_classified_total", map[string]string{"task": "topics"}, 3},
		{"lorakit_router_requests_total", map[string]string{"route": "/api/v1/predict_fewshot", "code": "200"}, 1},
		{"lorakit_router_requests_total", map[string]string{"route": "/api/v1/predict_fewshot", "code": "400"}, 1},
		{"lorakit_router_inference_duration_seconds", map[string]string{"model": "topics"}, 3},
	} {
		if got, ok := m.value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// Every answer carries a request id, the client's when valid.
	resp, _ := h.send("POST", "/api/v1/predict_fewshot", `{"text": "x"}`, http.Header{router.RequestIDHeader: {"fewshot-1"}})
	if resp.Header.Get(router.RequestIDHeader) != "fewshot-1" {
		t.Errorf("request id %q", resp.Header.Get(router.RequestIDHeader))
	}
}
