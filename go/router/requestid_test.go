package router_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/router"
)

// logsOf returns the log records that carry request id.
func logsOf(h *harness, id string) []map[string]any {
	var out []map[string]any
	for _, rec := range h.logRecords() {
		if rec["request_id"] == id {
			out = append(out, rec)
		}
	}
	return out
}

func TestRequestIDFromClientIsEchoedAndLogged(t *testing.T) {
	h := loaded(t, &fakeLoader{behaviour: map[string]string{"pii": "error"}})
	hdr := http.Header{}
	hdr.Set(router.RequestIDHeader, "trace-7f3a:01.x_y")
	resp, _ := h.send("POST", "/api/v1/classify", `{"text": "music", "task": "intent"}`, hdr)
	if got := resp.Header.Get(router.RequestIDHeader); got != "trace-7f3a:01.x_y" {
		t.Fatalf("echoed id %q", got)
	}
	recs := logsOf(h, "trace-7f3a:01.x_y")
	if len(recs) != 1 || recs[0]["msg"] != "request" || recs[0]["status"] != 200.0 {
		t.Errorf("access log of the request: %v", recs)
	}

	// Every line about a failing request carries its id: the model error and the access log.
	hdr.Set(router.RequestIDHeader, "failing-1")
	resp, _ = h.send("POST", "/api/v1/classify", `{"text": "x", "task": "pii"}`, hdr)
	if resp.StatusCode != 500 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var msgs []string
	for _, rec := range logsOf(h, "failing-1") {
		msgs = append(msgs, rec["msg"].(string))
	}
	if strings.Join(msgs, ",") != "model call failed,request" {
		t.Errorf("log lines of the failing request: %v", msgs)
	}
	// Lines about no request (loading, reloads) carry no id.
	for _, rec := range h.logRecords() {
		if rec["msg"] == "generation loaded" && rec["request_id"] != nil {
			t.Errorf("a reload log line names a request: %v", rec)
		}
	}
}

func TestInvalidRequestIDsAreReplaced(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for _, bad := range []string{"", "has space", `quote"d`, "é", strings.Repeat("a", 129), "semi;colon", "a/b"} {
		hdr := http.Header{}
		if bad != "" {
			hdr.Set(router.RequestIDHeader, bad)
		}
		resp, _ := h.send("GET", "/health", "", hdr)
		id := resp.Header.Get(router.RequestIDHeader)
		if !generated.MatchString(id) || seen[id] {
			t.Errorf("client id %q: answered id %q, want a fresh generated one", bad, id)
		}
		seen[id] = true
	}
	// 128 safe characters are kept.
	hdr := http.Header{}
	long := strings.Repeat("a", 128)
	hdr.Set(router.RequestIDHeader, long)
	if resp, _ := h.send("GET", "/health", "", hdr); resp.Header.Get(router.RequestIDHeader) != long {
		t.Error("a 128-character id was not kept")
	}
}

// While the first load runs the router answers: /health 503 "loading", model routes 503 no_models.
func TestHealthWhileLoading(t *testing.T) {
	gate := make(chan struct{})
	h := newHarness(t, testRoot(t), &fakeLoader{loadGate: gate}, router.Limits{})
	done := make(chan error, 1)
	go func() { done <- h.srv.Reload(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body := h.do("GET", "/health", "")
		if status == 503 && body["status"] == "loading" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never reported loading: %d %v", status, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, body := h.do("POST", "/api/v1/classify", `{"text": "music", "task": "intent"}`)
	if status != 503 || errorCode(t, body) != "no_models" || !strings.Contains(body["error"].(map[string]any)["message"].(string), "loading") {
		t.Errorf("classify while loading: %d %v", status, body)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if status, body := h.do("GET", "/health", ""); status != 200 || body["status"] != "ok" {
		t.Errorf("after loading: %d %v", status, body)
	}
}
