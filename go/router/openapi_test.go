package router_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// Every registered route is documented and every documented operation is registered.
func TestOpenAPIDescribesExactlyTheRegisteredRoutes(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	doc, err := router.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var registered, documented []string
	for _, r := range h.srv.Routes() {
		registered = append(registered, r.Method+" "+r.Path)
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(registered)
	slices.Sort(documented)
	if !slices.Equal(registered, documented) {
		t.Errorf("routes and OpenAPI operations differ:\nregistered %v\ndocumented %v", registered, documented)
	}
	// Every operation documents the error body for the statuses the router answers on every route.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Responses.Status(http.StatusMethodNotAllowed) == nil {
				t.Errorf("%s %s does not document 405", method, path)
			}
		}
	}
}

// GET /openapi.json serves the embedded document as valid OpenAPI 3 JSON.
func TestOpenAPIServed(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	resp, raw := h.send("GET", "/openapi.json", "", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	served, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := served.Validate(context.Background()); err != nil {
		t.Fatalf("served document is not valid OpenAPI 3: %v", err)
	}
	if served.OpenAPI != "3.0.3" || served.Paths.Find("/predict") == nil || served.Components.Schemas["Error"] == nil {
		t.Errorf("served document: openapi %q, paths %v", served.OpenAPI, served.Paths.InMatchingOrder())
	}
}

// recorder is a testing.TB that records failures instead of failing, to prove the contract check fails.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatal(args ...any) { r.failures = append(r.failures, fmt.Sprint(args...)) }
func (r *recorder) Helper()           {}

// The contract check catches a response or request that drifted from the document.
func TestContractCheckFailsOnDrift(t *testing.T) {
	good := `{"has_pii":false,"entities":[],"security_recommendation":"allow","processing_time_ms":0}`
	cases := map[string]struct {
		path, reqBody, respBody string
		status                  int
		dropRequestID           bool
	}{
		"extra response field":     {"/api/v1/classify/pii", `{"text":"x"}`, `{"has_pii":false,"entities":[],"security_recommendation":"allow","processing_time_ms":0,"surprise":1}`, 200, false},
		"wrong type":               {"/api/v1/classify/pii", `{"text":"x"}`, `{"has_pii":"no","entities":[],"security_recommendation":"allow","processing_time_ms":0}`, 200, false},
		"undocumented status":      {"/api/v1/classify/pii", `{"text":"x"}`, `{"error":{"code":"internal","message":"m"}}`, 418, false},
		"unknown error code":       {"/api/v1/classify/pii", `{"text":"x"}`, `{"error":{"code":"oops","message":"m"}}`, 400, false},
		"no request id":            {"/api/v1/classify/pii", `{"text":"x"}`, good, 200, true},
		"accepted invalid request": {"/api/v1/classify/pii", `{"txt":"x"}`, good, 200, false},
		"undocumented route":       {"/api/v2/secret", ``, good, 200, false},
	}
	for name, c := range cases {
		rec := &recorder{TB: t}
		req, _ := http.NewRequest("POST", "http://router"+c.path, strings.NewReader(c.reqBody))
		resp := &http.Response{StatusCode: c.status, Header: http.Header{"Content-Type": {"application/json"}}}
		if !c.dropRequestID {
			resp.Header.Set(router.RequestIDHeader, "abc")
		}
		resp.Body = io.NopCloser(bytes.NewReader(nil))
		routertest.CheckContract(rec, req, []byte(c.reqBody), resp, []byte(c.respBody))
		if len(rec.failures) == 0 {
			t.Errorf("%s: the contract check passed", name)
		}
	}
	// The control: the good exchange passes.
	rec := &recorder{TB: t}
	req, _ := http.NewRequest("POST", "http://router/api/v1/classify/pii", strings.NewReader(`{"text":"x"}`))
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}}
	resp.Header.Set(router.RequestIDHeader, "abc")
	routertest.CheckContract(rec, req, []byte(`{"text":"x"}`), resp, []byte(good))
	if len(rec.failures) != 0 {
		t.Errorf("a valid exchange failed the contract check: %v", rec.failures)
	}
}
