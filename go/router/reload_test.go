package router_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/discovery/discoverytest"
)

func allClosed(models []*fakeClassifier) bool {
	for _, m := range models {
		if !m.closed.Load() {
			return false
		}
	}
	return true
}

func noneClosed(models []*fakeClassifier) bool {
	for _, m := range models {
		if m.closed.Load() {
			return false
		}
	}
	return true
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Requests hammer the router while generations are swapped underneath: none may fail, none may reach a
// closed model, and every retired generation must end up closed.
func TestReloadUnderConcurrentLoad(t *testing.T) {
	loader := &fakeLoader{}
	h := loaded(t, loader)
	const workers, reloads = 8, 20
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 10000; i++ { // bounded; normally ended by stop
				select {
				case <-stop:
					return
				default:
				}
				path, body := "/api/v1/classify", `{"text": "weather", "task": "intent"}`
				if i%2 == 1 {
					path, body = "/api/v1/classify/batch", `{"texts": ["weather", "email"], "task_type": "all"}`
				}
				status, raw := h.raw("POST", path, body)
				if status != 200 {
					failed.Add(1)
					t.Errorf("worker %d: %s: %d %s", w, path, status, raw)
					return
				}
				ok.Add(1)
			}
		}(w)
	}
	for i := 0; i < reloads; i++ {
		if err := h.srv.Reload(context.Background()); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d requests ok, %d failed", ok.Load(), failed.Load())
	}
	if n := loader.misuse.Load(); n != 0 {
		t.Fatalf("%d calls reached a closed model", n)
	}
	for i := 0; i < reloads; i++ { // generations 1..reloads are retired
		gen := loader.generation(i)
		waitFor(t, fmt.Sprintf("generation %d to close", i+1), func() bool { return allClosed(gen) })
	}
	if current := loader.generation(reloads); !noneClosed(current) {
		t.Fatal("current generation was closed")
	}
	if g := h.srv.Generation(); g != reloads+1 {
		t.Fatalf("generation %d, want %d", g, reloads+1)
	}
	t.Logf("%d requests served across %d reloads", ok.Load(), reloads)
}

// An in-flight request keeps its generation open across a reload; new requests use the new generation.
func TestOldGenerationClosesAfterInFlightRequest(t *testing.T) {
	gate := make(chan struct{})
	openGate := sync.OnceFunc(func() { close(gate) })
	defer openGate() // a failed assertion must not leave the request blocked
	entered := make(chan struct{}, 1)
	loader := &fakeLoader{gate: gate, entered: entered}
	h := loaded(t, loader)

	type answer struct {
		status int
		body   map[string]any
	}
	done := make(chan answer, 1)
	go func() {
		status, body := h.do("POST", "/api/v1/classify", `{"text": "music", "task": "intent"}`)
		done <- answer{status, body}
	}()
	<-entered // the request is inside Classify of generation 1

	loader.set(func(l *fakeLoader) { l.gate, l.entered = nil, nil })
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	old := loader.generation(0)
	status, body := h.do("POST", "/api/v1/classify", `{"text": "music", "task": "intent"}`)
	if status != 200 || body["generation"].(float64) != 2 {
		t.Fatalf("new request: %d %v", status, body)
	}
	time.Sleep(20 * time.Millisecond)
	if !noneClosed(old) {
		t.Fatal("old generation closed while a request was in flight")
	}
	openGate()
	a := <-done
	if a.status != 200 || a.body["generation"].(float64) != 1 || a.body["label"] != "music" {
		t.Fatalf("in-flight request: %d %v", a.status, a.body)
	}
	waitFor(t, "old generation to close", func() bool { return allClosed(old) })
	if !noneClosed(loader.generation(1)) {
		t.Fatal("new generation closed")
	}
}

func TestFailedReloadKeepsServing(t *testing.T) {
	loader := &fakeLoader{}
	h := loaded(t, loader)
	loader.set(func(l *fakeLoader) { l.fail = errors.New("out of memory") })
	if err := h.srv.Reload(context.Background()); err == nil {
		t.Fatal("reload with a failing loader succeeded")
	}
	status, body := h.do("POST", "/api/v1/classify", `{"text": "music", "task": "intent"}`)
	if status != 200 || body["generation"].(float64) != 1 {
		t.Fatalf("after failed reload: %d %v", status, body)
	}
	if !noneClosed(loader.generation(0)) {
		t.Fatal("a failed reload closed the serving generation")
	}
	// Every discovered model refused at once is a failed reload too (a deployment problem, not the models).
	loader.set(func(l *fakeLoader) {
		l.fail = nil
		l.refuse = map[string]string{"intent_bert": "no device", "intent_roberta": "no device", "jailbreak": "no device", "pii": "no device"}
	})
	if err := h.srv.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "none of the 4") {
		t.Fatalf("reload refusing every model: %v", err)
	}
	if g := h.srv.Generation(); g != 1 {
		t.Fatalf("generation %d after failed reloads", g)
	}
	loader.set(func(l *fakeLoader) { l.refuse = nil })
	// The models root disappearing is a failed reload too.
	moved := h.root + ".moved"
	if err := os.Rename(h.root, moved); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err == nil {
		t.Fatal("reload of a missing root succeeded")
	}
	if status, _ := h.do("POST", "/api/v1/classify", `{"text": "music", "task": "intent"}`); status != 200 {
		t.Fatalf("after missing root: %d", status)
	}
	_, raw := h.raw("GET", "/metrics", "")
	if want := `lorakit_router_reloads_total{result="failure"} 3`; !strings.Contains(string(raw), want) {
		t.Errorf("metrics lack %s", want)
	}
	if err := os.Rename(moved, h.root); err != nil {
		t.Fatal(err)
	}
}

func TestPollReloadsWhenManifestsChange(t *testing.T) {
	loader := &fakeLoader{}
	h := loaded(t, loader)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polled := make(chan struct{})
	go func() {
		h.srv.Poll(ctx, 10*time.Millisecond)
		close(polled)
	}()
	time.Sleep(50 * time.Millisecond)
	if g := h.srv.Generation(); g != 1 {
		t.Fatalf("poll reloaded without a change: generation %d", g)
	}
	// Exports are atomic (written under a .tmp- name, then renamed), so each change is seen exactly once.
	discoverytest.WriteModel(t, h.root, "sentiment.tmp-1", discoverytest.Spec{Name: "sentiment", Labels: []string{"neg", "pos"}})
	time.Sleep(30 * time.Millisecond)
	if g := h.srv.Generation(); g != 1 {
		t.Fatalf("an export in progress triggered a reload: generation %d", g)
	}
	if err := os.Rename(filepath.Join(h.root, "sentiment.tmp-1"), filepath.Join(h.root, "sentiment")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "poll to load the new model", func() bool { return h.srv.Generation() == 2 })
	status, body := h.do("POST", "/api/v1/classify", `{"text": "pos", "task": "sentiment"}`)
	if status != 200 || body["label"] != "pos" {
		t.Errorf("new model: %d %v", status, body)
	}
	if err := os.Rename(filepath.Join(h.root, "sentiment"), filepath.Join(t.TempDir(), "sentiment")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "poll to drop the removed model", func() bool { return h.srv.Generation() == 3 })
	if status, _ := h.do("POST", "/api/v1/classify", `{"text": "pos", "task": "sentiment"}`); status != 404 {
		t.Errorf("removed model still served: %d", status)
	}
	cancel()
	<-polled
}

// A failed reload is retried by polling only once the manifests change again, not on every tick.
func TestPollDoesNotRetryUnchangedFailure(t *testing.T) {
	loader := &fakeLoader{}
	h := loaded(t, loader)
	failures := func() string {
		_, raw := h.raw("GET", "/metrics", "")
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, `lorakit_router_reloads_total{result="failure"}`) {
				return strings.Fields(line)[1]
			}
		}
		return ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	polled := make(chan struct{})
	defer func() { cancel(); <-polled }()
	go func() {
		h.srv.Poll(ctx, 5*time.Millisecond)
		close(polled)
	}()
	loader.set(func(l *fakeLoader) { l.fail = errors.New("out of memory") })
	discoverytest.WriteModel(t, h.root, "a.tmp-1", discoverytest.Spec{Name: "a"})
	if err := os.Rename(filepath.Join(h.root, "a.tmp-1"), filepath.Join(h.root, "a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload", func() bool { return failures() == "1" })
	time.Sleep(60 * time.Millisecond) // a dozen ticks
	if got := failures(); got != "1" {
		t.Fatalf("%s failed reloads for one change", got)
	}
	loader.set(func(l *fakeLoader) { l.fail = nil })
	discoverytest.WriteModel(t, h.root, "b.tmp-1", discoverytest.Spec{Name: "b"})
	if err := os.Rename(filepath.Join(h.root, "b.tmp-1"), filepath.Join(h.root, "b")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next change to reload", func() bool { return h.srv.Generation() == 2 })
}
