package router

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
)

// openAPISource is the API's OpenAPI 3 document. Tests check it against the route table and validate real
// requests and responses against its schemas, so it cannot drift from the handlers unnoticed.
//
//go:embed openapi.yaml
var openAPISource []byte

type openAPI struct {
	doc  *openapi3.T
	json []byte
}

// openAPIDocument parses and validates the embedded document once.
var openAPIDocument = sync.OnceValues(func() (*openAPI, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openAPISource)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	data, err := doc.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return &openAPI{doc: doc, json: data}, nil
})

// OpenAPI returns the parsed OpenAPI document (New has already checked it loads).
func OpenAPI() (*openapi3.T, error) {
	d, err := openAPIDocument()
	if err != nil {
		return nil, err
	}
	return d.doc, nil
}

func handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	d, err := openAPIDocument()
	if err != nil { // unreachable after New, which refuses a server whose document does not load
		writeError(w, errorf(http.StatusInternalServerError, codeInternal, "%v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(d.json)
}
