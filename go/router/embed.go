package router

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
)

type embedRequest struct {
	Texts Texts  `json:"texts"`
	Model string `json:"model"` // serving task or model id; "" = the only embedding model
}

type embedTiming struct {
	TotalMS     float64 `json:"total_ms"`
	InferenceMS float64 `json:"inference_ms"`
	TokensUsed  int     `json:"tokens_used"`
}

type embedResponse struct {
	Task       string      `json:"task"`  // the name the request routed by (the serving task when none was named)
	Model      string      `json:"model"` // ID of the model that answered
	Dim        int         `json:"dim"`
	Embeddings [][]float32 `json:"embeddings"`
	TokensIn   []int       `json:"tokens_in"`
	TokensUsed []int       `json:"tokens_used"`
	Generation uint64      `json:"generation"`
	Timing     embedTiming `json:"timing"`
}

type similarityRequest struct {
	TextsA Texts  `json:"texts_a"`
	TextsB Texts  `json:"texts_b"`
	Model  string `json:"model"`
}

type similarityResponse struct {
	Task       string      `json:"task"`
	Model      string      `json:"model"`
	Dim        int         `json:"dim"`
	Scores     []float64   `json:"scores"` // cosine of texts_a[i] and texts_b[i]
	Generation uint64      `json:"generation"`
	Timing     embedTiming `json:"timing"`
}

func (s *Server) handleEmbed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req embedRequest
	if e := decodeJSON(w, r, s.cfg.Limits.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := s.validateTexts("texts", req.Texts); e != nil {
		writeError(w, e)
		return
	}
	g := s.servingOrUnavailable(w)
	if g == nil {
		return
	}
	defer g.release()
	m, task, e := resolveEmbedder(g, req.Model)
	if e != nil {
		writeError(w, e)
		return
	}
	out, timing, e := s.embed(r.Context(), m, task, req.Texts)
	if e != nil {
		writeError(w, e)
		return
	}
	resp := embedResponse{Task: task, Model: m.Info.ID, Dim: out.Dim, Embeddings: make([][]float32, len(req.Texts)),
		TokensIn: out.TokensIn, TokensUsed: out.TokensUsed, Generation: g.id, Timing: timing}
	for i := range resp.Embeddings {
		resp.Embeddings[i] = out.Values[i*out.Dim : (i+1)*out.Dim]
	}
	resp.Timing.TotalMS = msSince(start)
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleSimilarity(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req similarityRequest
	if e := decodeJSON(w, r, s.cfg.Limits.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	for _, list := range []struct {
		field string
		texts []string
	}{{"texts_a", req.TextsA}, {"texts_b", req.TextsB}} {
		if len(list.texts) == 0 {
			writeError(w, errorf(http.StatusBadRequest, codeInvalidRequest, "%s must not be empty", list.field))
			return
		}
	}
	if len(req.TextsA) != len(req.TextsB) {
		writeError(w, errorf(http.StatusBadRequest, codeInvalidRequest,
			"texts_a and texts_b are compared pairwise and must have equal lengths, got %d and %d", len(req.TextsA), len(req.TextsB)))
		return
	}
	// One core call embeds both lists, so together they count against the batch limit.
	texts := append(append([]string{}, req.TextsA...), req.TextsB...)
	if e := s.validateTexts("texts_a and texts_b", texts); e != nil {
		writeError(w, e)
		return
	}
	g := s.servingOrUnavailable(w)
	if g == nil {
		return
	}
	defer g.release()
	m, task, e := resolveEmbedder(g, req.Model)
	if e != nil {
		writeError(w, e)
		return
	}
	out, timing, e := s.embed(r.Context(), m, task, texts)
	if e != nil {
		writeError(w, e)
		return
	}
	n, d := len(req.TextsA), out.Dim
	resp := similarityResponse{Task: task, Model: m.Info.ID, Dim: d, Scores: make([]float64, n), Generation: g.id,
		Timing: timing}
	for i := range n {
		resp.Scores[i] = cosine(out.Values[i*d:(i+1)*d], out.Values[(n+i)*d:(n+i+1)*d])
	}
	resp.Timing.TotalMS = msSince(start)
	writeJSON(w, http.StatusOK, resp)
}

// cosine is the real cosine (models need not normalise); a zero vector is similar to nothing (0).
func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return math.Max(-1, math.Min(1, dot/math.Sqrt(na*nb)))
}

// resolveEmbedder finds the embedding model a request names, or the only one loaded when it names none.
func resolveEmbedder(g *generation, name string) (*LoadedModel, string, *apiError) {
	return resolveOfKind(g, name, modelKind{
		task: discovery.TaskEmbedding, singular: "embedding", plural: "embedding", wrong: ", not an embedding model",
	})
}

// modelKind names the models a route serves, for resolveOfKind and its errors.
type modelKind struct {
	task             string // discovery task
	singular, plural string // "no <singular> model is loaded", "2 <plural> models are loaded"
	wrong            string // after "... a <kind> model" when the named model serves another task
}

// resolveOfKind finds the model of kind k a request names (a serving task or model id), or the only one loaded
// when it names none; the errors list the choices.
func resolveOfKind(g *generation, name string, k modelKind) (*LoadedModel, string, *apiError) {
	choices := g.tasksOf(k.task)
	listed := strings.Join(choices, ", ")
	if name == "" {
		switch len(choices) {
		case 0:
			return nil, "", errorf(http.StatusServiceUnavailable, codeNoModels, "no %s model is loaded", k.singular)
		case 1:
			return g.byTask[choices[0]], choices[0], nil
		}
		return nil, "", errorf(http.StatusBadRequest, codeInvalidRequest,
			"%d %s models are loaded: name one with \"model\" (choices: %s)", len(choices), k.plural, listed)
	}
	m := g.resolve(name)
	switch {
	case m == nil:
		return nil, "", errorf(http.StatusNotFound, codeUnknownTask, "no task or model named %q (%s models: %s)", name, k.plural, listed)
	case m.Kind() != k.task:
		return nil, "", errorf(http.StatusBadRequest, codeInvalidRequest,
			"%q is served by %s, a %s model%s (%s models: %s)", name, m.Info.ID, m.Kind(), k.wrong, k.plural, listed)
	}
	return m, name, nil
}

// embed runs the model over texts and checks the answer before anything is encoded.
func (s *Server) embed(ctx context.Context, m *LoadedModel, task string, texts []string) (*EmbeddingOutput, embedTiming, *apiError) {
	var timing embedTiming
	if m.Embedder == nil {
		s.logger.ErrorContext(ctx, "model without a runner for its task", "model", m.Info.ID, "kind", m.Kind())
		return nil, timing, errorf(http.StatusInternalServerError, codeInternal, "model %s cannot embed", m.Info.ID)
	}
	start := time.Now()
	out, err := m.Embedder.Embed(texts)
	timing.InferenceMS = msSince(start)
	s.metrics.observeInference(m.Info.ID, time.Since(start))
	if err != nil {
		return nil, timing, s.modelFailure(ctx, task, m, err)
	}
	if msg := checkEmbeddings(out, len(texts)); msg != "" {
		return nil, timing, s.invalidOutput(ctx, task, m, msg)
	}
	s.metrics.observeEmbedded(task, len(texts))
	timing.TokensUsed = sum(out.TokensUsed)
	return out, timing, nil
}

func checkEmbeddings(out *EmbeddingOutput, n int) string {
	switch {
	case out == nil:
		return "no output"
	case out.Dim <= 0 || len(out.Values) != n*out.Dim:
		return fmt.Sprintf("%d values do not match %d texts of width %d", len(out.Values), n, out.Dim)
	case len(out.TokensIn) != n || len(out.TokensUsed) != n:
		return "token counts do not match the number of texts"
	}
	for _, v := range out.Values {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return "non-finite embedding values"
		}
	}
	return ""
}
