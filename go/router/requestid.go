package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"regexp"
)

// RequestIDHeader carries a request's id: taken from the client when valid, generated otherwise, and
// always echoed in the response.
const RequestIDHeader = "X-Request-ID"

// maxRequestIDLen bounds a client id: it is copied into every log line of the request.
const maxRequestIDLen = 128

// validRequestID admits the characters of UUIDs, ULIDs and trace ids, and nothing that could break a log
// line or a header (no spaces, quotes or control characters).
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,128}$`)

type requestIDKey struct{}

// requestID returns the client's id when it is valid, else a fresh random one.
func requestID(fromClient string) string {
	if len(fromClient) <= maxRequestIDLen && validRequestID.MatchString(fromClient) {
		return fromClient
	}
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the id of the request ctx belongs to ("" outside a request).
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestIDHandler adds request_id to every record logged with a request's context, so each log line
// about a request names it without every call site passing it along.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestIDFrom(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
