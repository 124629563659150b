package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/lorakit/lorakit/go/router"
)

// batched serves the test root with dynamic batching configured as b.
func batched(t *testing.T, loader *fakeLoader, b router.Batching) *harness {
	t.Helper()
	h := newHarnessWith(t, testRoot(t), loader, func(c *router.Config) { c.Batching = b })
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

// histogram returns the histogram series of name with exactly these labels (nil when absent).
func (s scrape) histogram(name string, labels map[string]string) *dto.Histogram {
	for _, m := range s[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if maps.Equal(got, labels) {
			return m.GetHistogram()
		}
	}
	return nil
}

// calls reports the core calls of model pii and the texts they carried, from the batch size histogram.
func (h *harness) calls() (count uint64, texts float64, buckets map[float64]uint64) {
	h.t.Helper()
	hist := h.metrics().histogram("lorakit_router_batch_size", map[string]string{"model": "pii"})
	if hist == nil {
		return 0, 0, nil
	}
	buckets = map[float64]uint64{}
	for _, b := range hist.GetBucket() {
		buckets[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	return hist.GetSampleCount(), hist.GetSampleSum(), buckets
}

func (h *harness) queueDepth() float64 {
	h.t.Helper()
	v, _ := h.metrics().value("lorakit_router_batch_queue_depth", nil)
	return v
}

// post sends body to path with ctx on a fresh goroutine-safe client call and returns status and decoded body.
func (h *harness) post(ctx context.Context, path, body string) (int, map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", h.http.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	err = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, err
}

// stripTimes drops the measured times, which differ between runs, from an answer.
func stripTimes(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k != "inference_ms" && k != "total_ms" && k != "timing" {
				out[k] = stripTimes(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stripTimes(e)
		}
		return out
	}
	return v
}

type batchCase struct{ path, body string }

func mixedRequests(n int) []batchCase {
	labels := []string{"email", "phone", "name", "none", "nothing named"}
	var out []batchCase
	for i := range n {
		text := fmt.Sprintf("%s request %d%s", labels[i%len(labels)], i, strings.Repeat(" word", i%7))
		if i%3 == 2 {
			out = append(out, batchCase{"/api/v1/classify/batch", fmt.Sprintf(
				`{"texts": [%q, "phone %d"], "task_type": "pii", "options": {"return_probabilities": true}}`, text, i)})
			continue
		}
		out = append(out, batchCase{"/api/v1/classify", fmt.Sprintf(
			`{"text": %q, "task": "pii", "options": {"return_probabilities": true}}`, text)})
	}
	return out
}

// Concurrent requests are coalesced into fewer core calls, and every caller gets exactly the answer the
// same request gets from a router that does not batch.
func TestBatchingCoalescesAndAnswersEachCaller(t *testing.T) {
	h := batched(t, &fakeLoader{delay: 10 * time.Millisecond},
		router.Batching{Wait: 5 * time.Millisecond, MaxTexts: 32, MaxTokens: 4096})
	plain := loaded(t, &fakeLoader{})
	reqs := mixedRequests(24)
	got := make([]map[string]any, len(reqs))
	var wg sync.WaitGroup
	for i, rq := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := h.post(context.Background(), rq.path, rq.body)
			if err != nil || status != 200 {
				t.Errorf("request %d: %d %v %v", i, status, body, err)
			}
			got[i] = body
		}()
	}
	wg.Wait()
	texts := 0.0
	for i, rq := range reqs {
		status, want := plain.do("POST", rq.path, rq.body)
		if status != 200 {
			t.Fatalf("unbatched request %d: %d %v", i, status, want)
		}
		if g, w := stripTimes(got[i]), stripTimes(want); fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("request %d: batched answer\n%v\ndiffers from the unbatched one\n%v", i, g, w)
		}
		texts += map[bool]float64{true: 2, false: 1}[strings.Contains(rq.path, "batch")]
	}
	count, sum, _ := h.calls()
	if sum != texts {
		t.Errorf("core calls carried %v texts, the requests %v (each text exactly once)", sum, texts)
	}
	if count == 0 || sum/float64(count) <= 1 {
		t.Errorf("no coalescing: %d calls for %v texts", count, sum)
	}
	waits, _ := h.metrics().value("lorakit_router_batch_wait_seconds", map[string]string{"model": "pii"})
	if int(waits) != len(reqs) {
		t.Errorf("batch wait observed %v times for %d requests", waits, len(reqs))
	}
	if d := h.queueDepth(); d != 0 {
		t.Errorf("queue depth %v after every request was answered", d)
	}
}

// queueBehindGate makes one call enter the gated classifier, then queues n single requests behind it and
// waits until they are all queued; the returned wait group ends when every request was answered.
func queueBehindGate(t *testing.T, h *harness, entered chan struct{}, texts []string, status map[string]int, mu *sync.Mutex) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	send := func(path, body, key string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, err := h.post(context.Background(), path, body)
			if err != nil {
				t.Errorf("%s: %v", key, err)
			}
			mu.Lock()
			status[key] = code
			mu.Unlock()
			if code != 200 {
				t.Logf("%s: %d %v", key, code, out)
			}
		}()
	}
	send("/api/v1/classify", `{"text": "email first", "task": "pii"}`, "first")
	<-entered
	for _, text := range texts {
		send("/api/v1/classify", fmt.Sprintf(`{"text": %q, "task": "pii"}`, text), text)
	}
	waitFor(t, fmt.Sprintf("%d queued requests", len(texts)), func() bool { return h.queueDepth() == float64(len(texts)) })
	return &wg
}

// A call never holds more texts or padded tokens than the limits allow; a request over them runs alone.
func TestBatchingRespectsLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    router.Batching
	}{
		{"texts", router.Batching{Wait: 5 * time.Millisecond, MaxTexts: 4, MaxTokens: 4096}},
		{"tokens", router.Batching{Wait: 5 * time.Millisecond, MaxTexts: 32, MaxTokens: 20}}, // 12 bytes: 5 tokens
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate, entered := make(chan struct{}), make(chan struct{}, 64)
			h := batched(t, &fakeLoader{gate: gate, entered: entered}, tc.b)
			var texts []string
			for i := range 10 {
				texts = append(texts, fmt.Sprintf("phone call %d", i))
			}
			status, mu := map[string]int{}, &sync.Mutex{}
			wg := queueBehindGate(t, h, entered, texts, status, mu)
			wg.Add(1)
			go func() { // 6 texts: over both limits, so a call of its own
				defer wg.Done()
				body := `{"texts": ["a b c d e f g h", "b", "c", "d", "e", "f"], "task_type": "pii"}` // 6 x 5 tokens
				if code, out, err := h.post(context.Background(), "/api/v1/classify/batch", body); err != nil || code != 200 {
					t.Errorf("large batch: %d %v %v", code, out, err)
				}
			}()
			waitFor(t, "the large batch queued", func() bool { return h.queueDepth() == 11 })
			close(gate)
			wg.Wait()
			for k, code := range status {
				if code != 200 {
					t.Errorf("%s: status %d", k, code)
				}
			}
			// Calls: the gated one (1), then 4, 4, 2 singles, then the batch of 6 alone.
			count, sum, buckets := h.calls()
			if count != 5 || sum != 17 {
				t.Errorf("got %d calls with %v texts, want 5 calls with 17", count, sum)
			}
			if buckets[1] != 1 || buckets[2] != 2 || buckets[4] != 4 || buckets[8] != 5 {
				t.Errorf("batch sizes (cumulative by bucket) %v, want 1, 4, 4, 2 and 6", buckets)
			}
		})
	}
}

// A client that gives up while queued leaves the queue: its text never reaches the core.
func TestBatchingCancelledRequestLeavesQueue(t *testing.T) {
	gate, entered := make(chan struct{}), make(chan struct{}, 8)
	h := batched(t, &fakeLoader{gate: gate, entered: entered}, router.Batching{Wait: time.Millisecond})
	status, mu := map[string]int{}, &sync.Mutex{}
	wg := queueBehindGate(t, h, entered, nil, status, mu)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := h.post(ctx, "/api/v1/classify", `{"text": "phone me", "task": "pii"}`)
		errc <- err
	}()
	waitFor(t, "the request queued", func() bool { return h.queueDepth() == 1 })
	cancel()
	if err := <-errc; err == nil {
		t.Error("the cancelled request got an answer")
	}
	waitFor(t, "the cancelled request left the queue", func() bool { return h.queueDepth() == 0 })
	close(gate)
	wg.Wait()
	if status["first"] != 200 {
		t.Errorf("first request: %d", status["first"])
	}
	time.Sleep(20 * time.Millisecond) // a wrongly kept request would be run by now
	if count, sum, _ := h.calls(); count != 1 || sum != 1 {
		t.Errorf("got %d core calls with %v texts, want only the first request's", count, sum)
	}
}

// Requests queued when a reload swaps the generation, or when the server closes, run on the generation
// they were admitted to, and its models close only after them.
func TestBatchingReloadAndCloseWhileQueued(t *testing.T) {
	for _, closeServer := range []bool{false, true} {
		t.Run(map[bool]string{false: "reload", true: "close"}[closeServer], func(t *testing.T) {
			gate, entered := make(chan struct{}), make(chan struct{}, 64)
			loader := &fakeLoader{gate: gate, entered: entered}
			h := batched(t, loader, router.Batching{Wait: time.Millisecond, MaxTexts: 2})
			status, mu := map[string]int{}, &sync.Mutex{}
			wg := queueBehindGate(t, h, entered, []string{"phone one", "phone two", "name three"}, status, mu)
			if closeServer {
				h.srv.Close()
			} else if err := h.srv.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !noneClosed(loader.generation(0)) {
				t.Error("the old generation closed with requests queued")
			}
			close(gate)
			wg.Wait()
			for k, code := range status {
				if code != 200 {
					t.Errorf("%s: status %d", k, code)
				}
			}
			if len(status) != 4 {
				t.Errorf("answers %v, want 4", status)
			}
			waitFor(t, "the old generation closed", func() bool { return allClosed(loader.generation(0)) })
			if n := loader.misuse.Load(); n != 0 {
				t.Errorf("%d calls reached a closed model", n)
			}
			if !closeServer {
				status, body := h.do("POST", "/api/v1/classify", `{"text": "email", "task": "pii"}`)
				if status != 200 || body["generation"] != float64(2) {
					t.Errorf("after the reload: %d %v", status, body)
				}
			}
		})
	}
}

// One bad text fails only its own request: a failed coalesced call is retried request by request.
func TestBatchingIsolatesFailures(t *testing.T) {
	gate, entered := make(chan struct{}), make(chan struct{}, 64)
	h := batched(t, &fakeLoader{gate: gate, entered: entered, behaviour: map[string]string{"pii": "poison"}},
		router.Batching{Wait: 5 * time.Millisecond})
	status, mu := map[string]int{}, &sync.Mutex{}
	wg := queueBehindGate(t, h, entered, []string{"phone one", "a poison text", "name three"}, status, mu)
	close(gate)
	wg.Wait()
	want := map[string]int{"first": 200, "phone one": 200, "a poison text": 400, "name three": 200}
	if !maps.Equal(status, want) {
		t.Errorf("statuses %v, want %v", status, want)
	}
	// The gated call, the coalesced one that failed, and one retry per request.
	if count, _, _ := h.calls(); count != 5 {
		t.Errorf("%d core calls, want 5", count)
	}
}

// A runner that panics inside a coalesced call answers 500 internal; the router keeps serving.
func TestBatchingSurvivesRunnerPanic(t *testing.T) {
	h := batched(t, &fakeLoader{behaviour: map[string]string{"pii": "panic"}}, router.Batching{Wait: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := h.post(context.Background(), "/api/v1/classify", fmt.Sprintf(`{"text": "email %d", "task": "pii"}`, i))
			if err != nil || status != 500 || errorCode(t, body) != "internal" {
				t.Errorf("request %d: %d %v %v", i, status, body, err)
			}
		}()
	}
	wg.Wait()
	if status, body := h.do("POST", "/api/v1/classify", `{"text": "weather", "task": "intent"}`); status != 200 {
		t.Errorf("another model after the panic: %d %v", status, body)
	}
}

func TestBatchingRefusesNegativeSettings(t *testing.T) {
	_, err := router.New(router.Config{ModelsRoot: t.TempDir(), Loader: &fakeLoader{},
		Batching: router.Batching{Wait: time.Millisecond, MaxTexts: -1}})
	if err == nil || !strings.Contains(err.Error(), "must not be negative") {
		t.Errorf("negative max texts: %v", err)
	}
}

// A malformed coalesced answer is retried request by request, and each malformed answer is a 500.
func TestBatchingMalformedOutput(t *testing.T) {
	gate, entered := make(chan struct{}), make(chan struct{}, 64)
	h := batched(t, &fakeLoader{gate: gate, entered: entered, behaviour: map[string]string{"pii": "short"}},
		router.Batching{Wait: 5 * time.Millisecond})
	status, mu := map[string]int{}, &sync.Mutex{}
	wg := queueBehindGate(t, h, entered, []string{"phone one", "name two"}, status, mu)
	close(gate)
	wg.Wait()
	if want := map[string]int{"first": 500, "phone one": 500, "name two": 500}; !maps.Equal(status, want) {
		t.Errorf("statuses %v, want %v", status, want)
	}
	if count, _, _ := h.calls(); count != 4 { // gated, coalesced, one retry each
		t.Errorf("%d core calls, want 4", count)
	}
}
