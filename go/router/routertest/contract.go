package routertest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/lorakit/lorakit/go/router"
)

// CheckContract validates one exchange with the router against its OpenAPI document: the response of every
// documented route (status, headers and body, with kin-openapi), and the request too when the router
// accepted it (a 2xx answer to a request the document calls invalid is drift as well). Routes the document
// lacks must have answered 404 or 405.
func CheckContract(t testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	t.Helper()
	doc, err := router.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	item := doc.Paths.Find(req.URL.Path)
	if item == nil || item.GetOperation(req.Method) == nil {
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s is not in the OpenAPI document but answered %d", req.Method, req.URL.Path, resp.StatusCode)
		}
		return
	}
	route := &routers.Route{Spec: doc, Path: req.URL.Path, PathItem: item, Method: req.Method, Operation: item.GetOperation(req.Method)}
	in := &openapi3filter.RequestValidationInput{
		Request: cloneWithBody(req, reqBody), Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	ctx := context.Background()
	if resp.StatusCode/100 == 2 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s %s was accepted (%d) but the document says the request is invalid: %v\nrequest: %s",
				req.Method, req.URL.Path, resp.StatusCode, err, reqBody)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(respBody)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s answered %d against the OpenAPI document: %v\nresponse: %.2000s",
			req.Method, req.URL.Path, resp.StatusCode, err, respBody)
	}
}

func cloneWithBody(req *http.Request, body []byte) *http.Request {
	c := req.Clone(context.Background())
	c.Body = io.NopCloser(bytes.NewReader(body))
	c.ContentLength = int64(len(body))
	if len(body) > 0 && c.Header.Get("Content-Type") == "" {
		c.Header.Set("Content-Type", "application/json") // what every JSON client sends
	}
	return c
}
