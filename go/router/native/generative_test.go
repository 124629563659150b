package native_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/native"
	"github.com/lorakit/lorakit/go/router/routertest"
)

var generativeFixtures = []string{"tiny_gemma3_generative", "tiny_qwen3_generative"}

// generativeRoot copies the generative fixtures, and the sibling base fixture an adapter names, into one root;
// it returns the root and each fixture's manifest labels.
func generativeRoot(t *testing.T) (string, map[string][]string) {
	t.Helper()
	names := slices.Clone(generativeFixtures)
	labels := map[string][]string{}
	for _, name := range generativeFixtures {
		raw, err := os.ReadFile(filepath.Join(lorakittest.FixtureDir(t, name), "lorakit.json"))
		if err != nil {
			t.Fatal(err)
		}
		var manifest struct {
			Labels  []string `json:"labels"`
			Adapter any      `json:"adapter"`
			Base    struct {
				Path string `json:"path"`
			} `json:"base"`
		}
		if err := json.Unmarshal(raw, &manifest); err != nil {
			t.Fatal(err)
		}
		labels[name] = manifest.Labels
		if base := manifest.Base.Path; manifest.Adapter != nil && base != "" && !filepath.IsAbs(base) &&
			filepath.Dir(base) == ".." && !slices.Contains(names, filepath.Base(base)) {
			names = append(names, filepath.Base(base))
		}
	}
	return routertest.ModelsRoot(t, names...), labels
}

// postChecked posts body and checks the exchange against the OpenAPI document.
func postChecked(t *testing.T, srv *httptest.Server, path string, body any) (int, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	routertest.CheckContract(t, req, raw, resp, answer)
	var out map[string]any
	if err := json.Unmarshal(answer, &out); err != nil {
		t.Fatalf("%s: %v: %s", path, err, answer)
	}
	return resp.StatusCode, out
}

// Generative fixtures load golden-verified with both runners and answer /api/v1/classify and
// /api/v1/predict_fewshot with the golden distributions.
func TestGenerativeRoutesOverRealModels(t *testing.T) {
	root, labels := generativeRoot(t)
	srv, err := router.New(router.Config{ModelsRoot: root,
		Loader: &native.Loader{Options: lorakit.Options{Threads: 1}, VerifyGolden: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { h.Close(); <-srv.Close() })

	for _, name := range generativeFixtures {
		g := golden(t, root, name)
		status, body := postChecked(t, h, "/api/v1/classify", map[string]any{"text": g.Texts[0], "task": name,
			"options": map[string]any{"return_probabilities": true}})
		if status != http.StatusOK {
			t.Fatalf("%s classify: %d %v", name, status, body)
		}
		probs := body["probabilities"].(map[string]any)
		if len(probs) != g.NumLabels {
			t.Fatalf("%s: %d probabilities, golden %d", name, len(probs), g.NumLabels)
		}
		worst := 0.0
		for j, l := range labels[name] {
			p, _ := probs[l].(float64)
			worst = math.Max(worst, math.Abs(float64(g.LabelProbs[j])-p))
		}
		if worst > g.ProbTolerance {
			t.Errorf("%s classify: max |diff| %g > %g: %v, golden %v", name, worst, g.ProbTolerance, probs,
				g.LabelProbs[:g.NumLabels])
		}
		for i, c := range g.FewShot {
			status, body := postChecked(t, h, "/api/v1/predict_fewshot", map[string]any{"model": name, "text": c.Text,
				"examples": c.Examples, "labels": c.Labels})
			if status != http.StatusOK {
				t.Fatalf("%s case %d: %d %v", name, i, status, body)
			}
			labels := body["labels"].([]any)
			got := body["probabilities"].(map[string]any)
			best := 0
			for j, l := range c.Labels {
				if labels[j] != l || math.Abs(got[l].(float64)-float64(c.Probabilities[j])) > g.ProbTolerance {
					t.Errorf("%s case %d: %v, golden %v %v", name, i, body, c.Labels, c.Probabilities)
				}
				if c.Probabilities[j] > c.Probabilities[best] {
					best = j
				}
			}
			if body["label"] != c.Labels[best] {
				t.Errorf("%s case %d: chose %v, golden %q", name, i, body["label"], c.Labels[best])
			}
		}
		// A prompt over max_seq_len is the core's input error, answered 400 with its advice.
		long := make([]map[string]string, 30)
		for i := range long {
			long[i] = map[string]string{"document": strings.Repeat("many words in this document ", 20), "label": "x"}
		}
		status, body = postChecked(t, h, "/api/v1/predict_fewshot", map[string]any{"model": name, "text": "y", "examples": long})
		if msg, _ := body["error"].(map[string]any)["message"].(string); status != http.StatusBadRequest ||
			body["error"].(map[string]any)["code"] != "invalid_input" || !strings.Contains(msg, "fewer") {
			t.Errorf("%s: a too long prompt: %d %v", name, status, body)
		}
	}
	_, body := postChecked(t, h, "/api/v1/predict_fewshot", map[string]any{"text": "y"})
	if body["error"].(map[string]any)["code"] != "invalid_request" {
		t.Errorf("two generative models and no model named: %v", body)
	}
}
