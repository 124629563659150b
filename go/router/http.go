package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
		return errorf(http.StatusBadRequest, codeInvalidJSON, "malformed JSON: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, codeInvalidJSON, "malformed JSON: data after the object")
	}
	return nil
}

type route struct {
	name    string // metrics label
	method  string
	handler func(w http.ResponseWriter, r *http.Request)
}

// Handler returns the HTTP API: routing, method checks, panic recovery, access logs and metrics.
func (s *Server) Handler() http.Handler {
	routes := map[string]route{
		"/api/v1/classify":       {"classify", http.MethodPost, s.handleClassify},
		"/api/v1/classify/batch": {"classify_batch", http.MethodPost, s.handleBatch},
		"/api/v1/embed":          {"embed", http.MethodPost, s.handleEmbed},
		"/api/v1/similarity":     {"similarity", http.MethodPost, s.handleSimilarity},
		"/api/v1/models":         {"models", http.MethodGet, s.handleModels},
		"/health":                {"health", http.MethodGet, s.handleHealth},
		"/metrics":               {"metrics", http.MethodGet, s.handleMetrics},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rt, ok := routes[r.URL.Path]
		name := rt.name
		if !ok {
			name = "other"
		}
		rec := &statusRecorder{ResponseWriter: w}
		s.metrics.inFlight.Add(1)
		defer func() {
			s.metrics.inFlight.Add(-1)
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("panic while serving", "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !rec.wroteHeader {
					writeError(rec, errorf(http.StatusInternalServerError, codeInternal, "internal error"))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			s.metrics.observeRequest(name, status, time.Since(start))
			level := slog.LevelInfo
			if name == "health" || name == "metrics" { // probes and scrapes would drown the access log
				level = slog.LevelDebug
			}
			s.logger.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", status,
				"duration_ms", msSince(start), "remote", r.RemoteAddr)
		}()
		switch {
		case !ok:
			writeError(rec, errorf(http.StatusNotFound, codeNotFound, "no route %s", r.URL.Path))
		case r.Method != rt.method:
			rec.Header().Set("Allow", rt.method)
			writeError(rec, errorf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "%s needs %s, got %s", r.URL.Path, rt.method, r.Method))
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
		writeError(w, errorf(http.StatusServiceUnavailable, codeNoModels, "no models are loaded"))
	}
	return g
}
