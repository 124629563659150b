package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"runtime/debug"
	"time"
)

// Error codes of the JSON error body {"error": {"code", "message"}}.
const (
	codeInvalidJSON      = "invalid_json"
	codeInvalidRequest   = "invalid_request"
	codeBodyTooLarge     = "body_too_large"
	codeBatchTooLarge    = "batch_too_large"
	codeTextTooLarge     = "text_too_large"
	codeUnknownTask      = "unknown_task"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeNoModels         = "no_models"
	codeModelUnavailable = "model_unavailable"
	codeInputTooLong     = "input_too_long"
	codeInvalidInput     = "invalid_input"
	codeModelError       = "model_error"
	codeInvalidOutput    = "invalid_model_output"
	codeInternal         = "internal"
)

// apiError is an error with the HTTP status and code it is answered with.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	var body errorBody
	body.Error.Code, body.Error.Message = e.code, e.message
	writeJSON(w, e.status, body)
}

// writeJSON encodes before writing the header, so an unencodable value becomes a 500, not a half answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"error":{"code":"internal","message":"response could not be encoded"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

// decodeJSON reads one JSON object from a body capped at limit bytes; unknown fields are errors so a
// misspelt option is never silently ignored.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *apiError {
	body := http.MaxBytesReader(w, r.Body, limit)
	data, err := io.ReadAll(body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return errorf(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body exceeds %d bytes", limit)
		}
		return errorf(http.StatusBadRequest, codeInvalidJSON, "reading request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if e := nullTextAPIError(err); e != nil {
			return e
		}
		return errorf(http.StatusBadRequest, codeInvalidJSON, "malformed JSON: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, codeInvalidJSON, "malformed JSON: data after the object")
	}
	if err := exactKeys(data, reflect.TypeOf(v)); err != nil {
		return errorf(http.StatusBadRequest, codeInvalidJSON, "malformed JSON: %v (field names are case-sensitive)", err)
	}
	return nil
}

// Route is one registered route of the API: its method and exact path. The metrics label of a request is
// its route's path, so labels come from this table only.
type Route struct {
	Method string
	Path   string
}

type route struct {
	Route
	handler func(w http.ResponseWriter, r *http.Request)
}

// routes is the API's route table: the OpenAPI document (openapi.yaml) describes exactly these.
func (s *Server) routes() []route {
	return []route{
		{Route{http.MethodPost, "/api/v1/classify"}, s.handleClassify},
		{Route{http.MethodPost, "/api/v1/classify/batch"}, s.handleBatch},
		{Route{http.MethodPost, "/api/v1/classify/intent"}, s.handleIntent},
		{Route{http.MethodPost, "/api/v1/classify/pii"}, s.handlePII},
		{Route{http.MethodPost, "/api/v1/classify/security"}, s.handleSecurity},
		{Route{http.MethodPost, "/api/v1/predict_fewshot"}, s.handleFewShot},
		{Route{http.MethodPost, "/api/v1/embed"}, s.handleEmbed},
		{Route{http.MethodPost, "/api/v1/similarity"}, s.handleSimilarity},
		{Route{http.MethodGet, "/api/v1/models"}, s.handleModels},
		{Route{http.MethodPost, "/predict"}, s.handlePredict},
		{Route{http.MethodPost, "/embed"}, s.handleTEIEmbed},
		{Route{http.MethodGet, "/health"}, s.handleHealth},
		{Route{http.MethodGet, "/metrics"}, s.metrics.handler().ServeHTTP},
		{Route{http.MethodGet, "/openapi.json"}, handleOpenAPI},
	}
}

// Routes lists the registered routes (for tests and documentation checks).
func (s *Server) Routes() []Route {
	var out []Route
	for _, rt := range s.routes() {
		out = append(out, rt.Route)
	}
	return out
}

// quietRoutes are logged at debug: probes and scrapes would drown the access log.
var quietRoutes = map[string]bool{"/health": true, "/metrics": true}

// Handler returns the HTTP API: routing, method checks, request ids, panic recovery, access logs and metrics.
func (s *Server) Handler() http.Handler {
	byPath := map[string]route{}
	for _, rt := range s.routes() {
		byPath[rt.Path] = rt
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r.Header.Get(RequestIDHeader))
		w.Header().Set(RequestIDHeader, id)
		r = r.WithContext(withRequestID(r.Context(), id))
		rt, ok := byPath[r.URL.Path]
		label := rt.Path
		if !ok {
			label = unmatchedRoute
		}
		rec := &statusRecorder{ResponseWriter: w}
		s.metrics.inFlight.Inc()
		defer func() {
			s.metrics.inFlight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.ErrorContext(r.Context(), "panic while serving", "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !rec.wroteHeader {
					writeError(rec, errorf(http.StatusInternalServerError, codeInternal, "internal error"))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			s.metrics.observeRequest(label, status, time.Since(start))
			level := slog.LevelInfo
			if quietRoutes[label] {
				level = slog.LevelDebug
			}
			s.logger.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", status,
				"duration_ms", msSince(start), "remote", r.RemoteAddr)
		}()
		switch {
		case !ok:
			writeError(rec, errorf(http.StatusNotFound, codeNotFound, "no route %s", r.URL.Path))
		case r.Method != rt.Method:
			rec.Header().Set("Allow", rt.Method)
			writeError(rec, errorf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "%s needs %s, got %s", r.URL.Path, rt.Method, r.Method))
		default:
			rt.handler(rec, r)
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and MaxBytesReader reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// acquireOrUnavailable is acquire for request handlers: with no generation loaded it answers 503 no_models and
// returns nil.
func (s *Server) acquireOrUnavailable(w http.ResponseWriter) *generation {
	g := s.cur.acquire()
	if g == nil {
		msg := "no models are loaded"
		if s.loading.Load() {
			msg = "models are loading"
		}
		writeError(w, errorf(http.StatusServiceUnavailable, codeNoModels, "%s", msg))
	}
	return g
}

// servingOrUnavailable is acquireOrUnavailable for routes that run a model: a generation that serves no
// model (every directory skipped or refused) answers 503 no_models too, since no name could be right.
func (s *Server) servingOrUnavailable(w http.ResponseWriter) *generation {
	g := s.acquireOrUnavailable(w)
	if g != nil && len(g.models) == 0 {
		e := errorf(http.StatusServiceUnavailable, codeNoModels,
			"no models are loaded: generation %d serves none (%d skipped, %d failed; see /api/v1/models)",
			g.id, len(g.catalog.Skipped), len(g.failed))
		g.release()
		writeError(w, e)
		return nil
	}
	return g
}
