package router_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/discovery/discoverytest"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// fakeClassifier answers deterministically: a label whose name appears in the text gets 0.9 of the mass
// (the rest spread evenly); otherwise the distribution is uniform. Tokens are words + 2 specials, truncated
// at maxSeqLen, like a BERT tokenizer would report them.
type fakeClassifier struct {
	id     string
	gen    int
	labels []string
	// unsafeLabels (from the manifest) adds unsafe verdicts to Classify's output.
	unsafeLabels []string
	// reviewThreshold (the manifest's calibration review_threshold) adds review verdicts to Classify's output.
	reviewThreshold *float64
	maxSeqLen       int
	behaviour       string        // "", "nan", "error", "input_error", "panic", "short", "short_review"
	gate            chan struct{} // when set, Classify waits for it to close (an in-flight request)
	entered         chan struct{} // when set, receives one value per Classify call that reached the gate
	closed          atomic.Bool
	misuse          *atomic.Int64 // calls made after Close
	delay           time.Duration // simulated compute time per call
}

// begin is what every call does first: wait at the gate, simulate compute, and fail as configured.
func (f *fakeClassifier) begin() error {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.gate != nil {
		<-f.gate
	}
	time.Sleep(f.delay)
	if f.closed.Load() {
		f.misuse.Add(1)
		return errors.New("call on a closed model")
	}
	switch f.behaviour {
	case "error":
		return errors.New("device lost")
	case "input_error":
		return fmt.Errorf("%w: text is not valid", router.ErrInvalidInput)
	case "panic":
		panic("fake classifier panic")
	}
	return nil
}

// tokens counts words + 2 specials, like a BERT tokenizer would report them.
func (f *fakeClassifier) tokens(text string) (in, used int) {
	n := len(strings.Fields(text)) + 2
	return n, min(n, f.maxSeqLen)
}

func (f *fakeClassifier) Classify(texts []string) (*router.Output, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	if f.behaviour == "poison" && slices.ContainsFunc(texts, func(t string) bool { return strings.Contains(t, "poison") }) {
		return nil, fmt.Errorf("%w: a text is poison", router.ErrInvalidInput)
	}
	return f.answer(texts, f.labels, f.unsafeLabels, ""), nil
}

// answer gives the first label named in a text 0.9 of the mass (else hint's, when it is one of labels);
// with neither the distribution is uniform.
func (f *fakeClassifier) answer(texts, labels, unsafeLabels []string, hint string) *router.Output {
	k := len(labels)
	out := &router.Output{Labels: labels}
	for _, text := range texts {
		row := make([]float32, k)
		hit := slices.IndexFunc(labels, func(l string) bool { return strings.Contains(text, l) })
		if hit < 0 {
			hit = slices.Index(labels, hint)
		}
		for j := range row {
			switch {
			case hit < 0:
				row[j] = 1 / float32(k)
			case j == hit:
				row[j] = 0.9
			default:
				row[j] = 0.1 / float32(k-1)
			}
		}
		if f.behaviour == "nan" {
			row[0] = float32(math.NaN())
		}
		if f.reviewThreshold != nil {
			out.NeedsReview = append(out.NeedsReview, float64(slices.Max(row)) < *f.reviewThreshold)
		}
		out.Probabilities = append(out.Probabilities, row...)
		for _, p := range row { // logits whose softmax is row
			out.Logits = append(out.Logits, float32(math.Log(float64(p))))
		}
		in, used := f.tokens(text)
		out.TokensIn = append(out.TokensIn, in)
		out.TokensUsed = append(out.TokensUsed, used)
		if unsafeLabels != nil {
			best, score := 0, float32(0)
			for j, l := range labels {
				if row[j] > row[best] {
					best = j
				}
				if slices.Contains(unsafeLabels, l) {
					score += row[j]
				}
			}
			out.Unsafe = append(out.Unsafe, slices.Contains(unsafeLabels, labels[best]))
			out.UnsafeScore = append(out.UnsafeScore, score)
		}
	}
	if f.behaviour == "short" {
		out.TokensUsed = out.TokensUsed[:len(out.TokensUsed)-1]
	}
	if f.behaviour == "short_review" {
		out.NeedsReview = out.NeedsReview[:len(out.NeedsReview)-1]
	}
	return out
}

// ClassifyFewShot scores labels (nil: the manifest's, then new example labels) like Classify, except that
// with no label named in the text the last example's label gets the 0.9, so the examples visibly matter.
func (f *fakeClassifier) ClassifyFewShot(text string, examples []router.Example, labels []string) (*router.Output, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	if labels == nil {
		labels = slices.Clone(f.labels)
		for _, ex := range examples {
			if !slices.Contains(labels, ex.Label) {
				labels = append(labels, ex.Label)
			}
		}
	}
	hint := ""
	if len(examples) > 0 {
		hint = examples[len(examples)-1].Label
	}
	return f.answer([]string{text}, labels, nil, hint), nil
}

// ExtractEntities finds every capitalised word as a NAME entity (score 0.9), in rune offsets.
func (f *fakeClassifier) ExtractEntities(texts []string) (*router.EntityOutput, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	out := &router.EntityOutput{}
	for _, text := range texts {
		row := []router.Entity{}
		runes := []rune(text)
		for start := 0; start < len(runes); {
			end := start
			for end < len(runes) && !unicode.IsSpace(runes[end]) {
				end++
			}
			if end > start && unicode.IsUpper(runes[start]) {
				row = append(row, router.Entity{Type: "NAME", Start: start, End: end, Text: string(runes[start:end]), Score: 0.9})
			}
			start = end + 1
		}
		if f.behaviour == "nan" && len(row) > 0 {
			row[0].Score = float32(math.NaN())
		}
		out.Entities = append(out.Entities, row)
		in, used := f.tokens(text)
		out.TokensIn = append(out.TokensIn, in)
		out.TokensUsed = append(out.TokensUsed, used)
	}
	return out, nil
}

// fakeDim is the width of fake embeddings: (count of 'a', count of 'b', 1), deliberately not normalised.
const fakeDim = 3

func (f *fakeClassifier) Embed(texts []string) (*router.EmbeddingOutput, error) {
	if err := f.begin(); err != nil {
		return nil, err
	}
	out := &router.EmbeddingOutput{Dim: fakeDim}
	for _, text := range texts {
		out.Values = append(out.Values, float32(strings.Count(text, "a")), float32(strings.Count(text, "b")), 1)
		if f.behaviour == "nan" {
			out.Values[len(out.Values)-1] = float32(math.Inf(1))
		}
		in, used := f.tokens(text)
		out.TokensIn = append(out.TokensIn, in)
		out.TokensUsed = append(out.TokensUsed, used)
	}
	return out, nil
}

func (f *fakeClassifier) Close() error {
	f.closed.Store(true)
	return nil
}

// fakeLoader builds fake classifiers for every discovered model and records what it built.
type fakeLoader struct {
	mu        sync.Mutex
	gen       int
	fail      error             // Load returns it
	refuse    map[string]string // model ID -> reason it is refused at load
	behaviour map[string]string // model ID -> fakeClassifier.behaviour
	gate      chan struct{}
	entered   chan struct{}
	delay     time.Duration
	loadGate  chan struct{}       // when set, Load waits for it to close (a slow load)
	built     [][]*fakeClassifier // per generation
	misuse    atomic.Int64
}

func (l *fakeLoader) Load(_ context.Context, cat *discovery.Catalog) (*router.LoadedSet, error) {
	if l.loadGate != nil {
		<-l.loadGate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return nil, l.fail
	}
	l.gen++
	set := &router.LoadedSet{}
	var built []*fakeClassifier
	for _, m := range cat.Models {
		if reason, ok := l.refuse[m.ID]; ok {
			set.Failed = append(set.Failed, router.LoadFailure{Info: m, Err: errors.New(reason)})
			continue
		}
		f := &fakeClassifier{id: m.ID, gen: l.gen, labels: m.Manifest.Labels, unsafeLabels: m.Manifest.UnsafeLabels,
			reviewThreshold: reviewThreshold(m.Manifest), maxSeqLen: m.Manifest.MaxSeqLen, behaviour: l.behaviour[m.ID], gate: l.gate, entered: l.entered,
			misuse: &l.misuse, delay: l.delay}
		built = append(built, f)
		loaded := router.LoadedModel{Info: m, GoldenVerified: m.HasGolden()}
		switch m.Manifest.Task {
		case discovery.TaskTokenClassification:
			loaded.Extractor = f
		case discovery.TaskEmbedding:
			loaded.Embedder, loaded.Dim = f, fakeDim
		case discovery.TaskGenerativeClassification:
			loaded.Classifier, loaded.FewShot = f, f
		default:
			loaded.Classifier = f
		}
		set.Models = append(set.Models, loaded)
		set.Closers = append(set.Closers, f)
	}
	l.built = append(l.built, built)
	return set, nil
}

func (l *fakeLoader) generation(i int) []*fakeClassifier {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.built[i]
}

func (l *fakeLoader) set(fn func(l *fakeLoader)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(l)
}

// testRoot writes a models root: intent (bert) and intent_roberta (roberta) both named "intent",
// jailbreak (adapter on a shared base) and pii (merged).
func testRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	sha := discoverytest.WriteBase(t, root+"/base", "base weights")
	discoverytest.WriteModel(t, root, "intent_bert", discoverytest.Spec{Name: "intent",
		Labels: []string{"greeting", "weather", "music"}, Adapter: true, BasePath: "../base", BaseSHA: sha, Golden: true})
	discoverytest.WriteModel(t, root, "intent_roberta", discoverytest.Spec{Name: "intent", Architecture: "roberta",
		Labels: []string{"greeting", "weather", "music"}})
	discoverytest.WriteModel(t, root, "jailbreak", discoverytest.Spec{Labels: []string{"benign", "jailbreak"},
		Adapter: true, BasePath: "../base", BaseSHA: sha})
	// pii is calibrated: a text naming no label (top probability 0.25) needs review, one naming a label (0.9)
	// does not.
	discoverytest.WriteModel(t, root, "pii", discoverytest.Spec{Labels: []string{"none", "email", "phone", "name"},
		Calibration: map[string]any{"temperature": 1.5, "review_threshold": 0.5}})
	return root
}

func reviewThreshold(m discovery.Manifest) *float64 {
	if m.Calibration == nil {
		return nil
	}
	return m.Calibration.ReviewThreshold
}

type harness struct {
	t      *testing.T
	srv    *router.Server
	loader *fakeLoader
	http   *httptest.Server
	root   string
	logs   *bytes.Buffer
	logw   *lockedWriter
}

// logRecords parses the JSON log lines written so far.
func (h *harness) logRecords() []map[string]any {
	h.t.Helper()
	h.logw.mu.Lock()
	text := h.logs.String()
	h.logw.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			h.t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, rec)
	}
	return out
}

func newHarness(t *testing.T, root string, loader *fakeLoader, limits router.Limits) *harness {
	t.Helper()
	return newHarnessWith(t, root, loader, func(c *router.Config) { c.Limits = limits })
}

// newHarnessWith serves root with the configuration edit applies to the test defaults.
func newHarnessWith(t *testing.T, root string, loader *fakeLoader, edit func(*router.Config)) *harness {
	t.Helper()
	logs := &bytes.Buffer{}
	logw := &lockedWriter{w: logs}
	cfg := router.Config{ModelsRoot: root, Loader: loader, Logger: slog.New(slog.NewJSONHandler(logw, nil))}
	edit(&cfg)
	srv, err := router.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, srv: srv, loader: loader, root: root, logs: logs, logw: logw}
	h.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		h.http.Close()
		select {
		case <-srv.Close():
		case <-time.After(5 * time.Second):
			t.Error("the last generation did not close after the server stopped")
		}
	})
	return h
}

func loaded(t *testing.T, loader *fakeLoader) *harness {
	t.Helper()
	h := newHarness(t, testRoot(t), loader, router.Limits{})
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

// do sends a request and decodes a JSON answer into a generic map.
func (h *harness) do(method, path, body string) (int, map[string]any) {
	h.t.Helper()
	status, raw := h.raw(method, path, body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		h.t.Fatalf("%s %s: answer is not JSON (%v): %s", method, path, err, raw)
	}
	return status, out
}

// raw sends a request and returns the answer's status and body; every exchange is checked against the
// OpenAPI document (routertest.CheckContract).
func (h *harness) raw(method, path, body string) (int, []byte) {
	h.t.Helper()
	resp, raw := h.send(method, path, body, nil)
	return resp.StatusCode, raw
}

// send is raw with request headers, returning the whole response.
func (h *harness) send(method, path, body string, header http.Header) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.http.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	routertest.CheckContract(h.t, req, []byte(body), resp, raw)
	return resp, raw
}

// errorCode extracts error.code from a JSON error answer.
func errorCode(t *testing.T, body map[string]any) string {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if !ok {
		t.Fatalf("not an error answer: %v", body)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error without a message: %v", body)
	}
	code, _ := e["code"].(string)
	return code
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
