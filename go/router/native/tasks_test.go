package native_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/native"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// taskRoot copies every task fixture (task_fixtures.json) and its base into one models root.
func taskRoot(t *testing.T) (string, []lorakittest.TaskFixture) {
	t.Helper()
	fixtures := lorakittest.TaskFixtures(t)
	seen := map[string]bool{}
	var names []string
	for _, f := range fixtures {
		for _, name := range []string{f.Base, f.Name} {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	return routertest.ModelsRoot(t, names...), fixtures
}

func golden(t *testing.T, root, id string) *lorakit.Golden {
	t.Helper()
	g, err := lorakit.ReadGolden(filepath.Join(root, id, lorakit.GoldenFile))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Every task fixture loads as an adapter on its shared base, passes the golden check and gets the runner
// of its kind, whose answers equal the golden ones.
func TestTaskFixturesServeTheirKind(t *testing.T) {
	root, fixtures := taskRoot(t)
	set := load(t, root, true)
	if len(set.Failed) != 0 {
		t.Fatalf("failed: %s: %v", set.Failed[0].Info.ID, set.Failed[0].Err)
	}
	models := byID(set)
	for _, f := range fixtures {
		m, ok := models[f.Name]
		if !ok || !m.GoldenVerified || m.Info.Mode != "adapter" {
			t.Fatalf("%s: %+v", f.Name, m)
		}
		g := golden(t, root, f.Name)
		switch f.Task {
		case lorakit.TaskTokenClassification:
			if m.Classifier != nil || m.Embedder != nil || m.Dim != 0 {
				t.Errorf("%s: runners %+v", f.Name, m)
			}
			out, err := m.Extractor.ExtractEntities(g.Texts)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range g.Entities {
				ok := len(out.Entities[i]) == len(want)
				for j := 0; ok && j < len(want); j++ {
					e, w := out.Entities[i][j], want[j]
					ok = e.Type == w.Type && e.Start == w.Start && e.End == w.End && e.Text == w.Text &&
						math.Abs(float64(e.Score-w.Score)) <= g.Tolerance
				}
				if !ok {
					t.Errorf("%s text %d: %+v, golden %+v", f.Name, i, out.Entities[i], want)
				}
			}
		case lorakit.TaskEmbedding:
			if m.Classifier != nil || m.Extractor != nil || m.Dim != g.Dim {
				t.Errorf("%s: runners %+v, golden dim %d", f.Name, m, g.Dim)
			}
			out, err := m.Embedder.Embed(g.Texts)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range out.Values {
				if math.Abs(float64(v-g.Embeddings[i])) > g.Tolerance {
					t.Fatalf("%s value %d: %v, golden %v", f.Name, i, v, g.Embeddings[i])
				}
			}
		default:
			t.Fatalf("%s: unexpected task %s", f.Name, f.Task)
		}
	}
}

func post(t *testing.T, srv *httptest.Server, path string, body any) (int, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Post(srv.URL+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// The HTTP routes over real models: entities per text, embeddings and cosine scores from the core.
func TestTaskRoutesOverRealModels(t *testing.T) {
	root, fixtures := taskRoot(t)
	srv, err := router.New(router.Config{ModelsRoot: root, Loader: &native.Loader{Options: lorakit.Options{Threads: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { h.Close(); <-srv.Close() })

	var token, embed lorakittest.TaskFixture
	var embedders []string
	for _, f := range fixtures {
		switch {
		case f.Task == lorakit.TaskTokenClassification && token.Name == "":
			token = f
		case f.Task == lorakit.TaskEmbedding:
			embedders = append(embedders, f.Name)
			if embed.Name == "" {
				embed = f
			}
		}
	}
	g := golden(t, root, token.Name)
	status, body := post(t, h, "/api/v1/classify/batch", map[string]any{"texts": g.Texts, "task_type": token.Name})
	if status != http.StatusOK {
		t.Fatalf("batch: %d %v", status, body)
	}
	for i, item := range body["results"].([]any) {
		entities := item.(map[string]any)["entities"].([]any)
		if len(entities) != len(g.Entities[i]) {
			t.Fatalf("text %d: %v, golden %+v", i, entities, g.Entities[i])
		}
		for j, e := range entities {
			e := e.(map[string]any)
			w := g.Entities[i][j]
			if e["type"] != w.Type || e["start"] != float64(w.Start) || e["end"] != float64(w.End) || e["text"] != w.Text {
				t.Errorf("text %d entity %d: %v, golden %+v", i, j, e, w)
			}
		}
	}

	g = golden(t, root, embed.Name)
	status, body = post(t, h, "/api/v1/embed", map[string]any{"texts": g.Texts[:2], "model": embed.Name})
	if status != http.StatusOK || body["dim"] != float64(g.Dim) || len(body["embeddings"].([]any)) != 2 {
		t.Fatalf("embed: %d %v", status, body)
	}
	if len(embedders) > 1 {
		status, body = post(t, h, "/api/v1/embed", map[string]any{"texts": g.Texts[:1]})
		msg, _ := body["error"].(map[string]any)["message"].(string)
		if status != http.StatusBadRequest || !strings.Contains(msg, strings.Join(embedders, ", ")) {
			t.Errorf("embed without a model among %v: %d %v", embedders, status, body)
		}
	}
	// The cosine of the golden vectors themselves is the expected score.
	a, b := g.Embeddings[:g.Dim], g.Embeddings[g.Dim:2*g.Dim]
	var dot, na, nb float64
	for k := range a {
		dot, na, nb = dot+float64(a[k]*b[k]), na+float64(a[k]*a[k]), nb+float64(b[k]*b[k])
	}
	status, body = post(t, h, "/api/v1/similarity", map[string]any{"texts_a": g.Texts[:2], "texts_b": g.Texts[1:3],
		"model": embed.Name})
	scores, _ := body["scores"].([]any)
	if status != http.StatusOK || len(scores) != 2 || math.Abs(scores[0].(float64)-dot/math.Sqrt(na*nb)) > 1e-4 {
		t.Fatalf("similarity: %d %v", status, body)
	}
	if _, self := post(t, h, "/api/v1/similarity", map[string]any{"texts_a": g.Texts[:1], "texts_b": g.Texts[:1],
		"model": embed.Name}); math.Abs(self["scores"].([]any)[0].(float64)-1) > 1e-6 {
		t.Errorf("a text is its own nearest neighbour: %v", self)
	}
}
