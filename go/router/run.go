package router

import (
	"context"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
)

// run answers one classification task over the whole batch with the runner of the model's kind.
func (s *Server) run(ctx context.Context, m *LoadedModel, task string, texts []string, opts Options) ([]*Classification, TaskTiming, *apiError) {
	timing := TaskTiming{Task: task, Model: m.Info.ID, Texts: len(texts)}
	switch {
	case (m.Kind() == discovery.TaskSequenceClassification || m.Kind() == discovery.TaskGenerativeClassification) &&
		m.Classifier != nil:
		return s.runClassifier(ctx, m, timing, texts, opts)
	case m.Kind() == discovery.TaskTokenClassification && m.Extractor != nil:
		return s.runExtractor(ctx, m, timing, texts)
	case m.Kind() == discovery.TaskEmbedding:
		return nil, timing, errorf(http.StatusBadRequest, codeInvalidRequest,
			"task %s is served by %s, an embedding model: use /api/v1/embed or /api/v1/similarity", task, m.Info.ID)
	}
	s.logger.ErrorContext(ctx, "model without a runner for its task", "model", m.Info.ID, "kind", m.Kind())
	return nil, timing, errorf(http.StatusInternalServerError, codeInternal, "model %s cannot run %s", m.Info.ID, m.Kind())
}

// modelFailure answers a runner error: the request's fault (400) or the model's (500, logged).
func (s *Server) modelFailure(ctx context.Context, task string, m *LoadedModel, err error) *apiError {
	if errors.Is(err, ErrInvalidInput) {
		return errorf(http.StatusBadRequest, codeInvalidInput, "task %s: %v", task, err)
	}
	s.logger.ErrorContext(ctx, "model call failed", "task", task, "model", m.Info.ID, "error", err.Error())
	return errorf(http.StatusInternalServerError, codeModelError, "task %s: model %s failed: %v", task, m.Info.ID, err)
}

// invalidOutput answers a malformed or non-finite model answer (logged).
func (s *Server) invalidOutput(ctx context.Context, task string, m *LoadedModel, msg string) *apiError {
	s.logger.ErrorContext(ctx, "invalid model output", "task", task, "model", m.Info.ID, "problem", msg)
	return errorf(http.StatusInternalServerError, codeInvalidOutput, "task %s: model %s: %s", task, m.Info.ID, msg)
}

// classifyRaw runs a sequence classifier over the batch and checks its answer before anyone reads it.
func (s *Server) classifyRaw(ctx context.Context, m *LoadedModel, timing TaskTiming, texts []string) (*Output, TaskTiming, *apiError) {
	task := timing.Task
	if m.Classifier == nil {
		s.logger.ErrorContext(ctx, "model without a runner for its task", "model", m.Info.ID, "kind", m.Kind())
		return nil, timing, errorf(http.StatusInternalServerError, codeInternal, "model %s cannot classify", m.Info.ID)
	}
	out, ms, err := s.classifyCall(ctx, m, texts)
	timing.InferenceMS = ms
	if e := batchFailure(ctx, task, m, err); e != nil {
		return nil, timing, e
	}
	if err != nil {
		return nil, timing, s.modelFailure(ctx, task, m, err)
	}
	if msg := checkOutput(out, len(texts)); msg != "" {
		return nil, timing, s.invalidOutput(ctx, task, m, msg)
	}
	s.metrics.observeTexts(task, len(texts))
	timing.TokensUsed = sum(out.TokensUsed)
	return out, timing, nil
}

func (s *Server) runClassifier(ctx context.Context, m *LoadedModel, timing TaskTiming, texts []string, opts Options) ([]*Classification, TaskTiming, *apiError) {
	task := timing.Task
	out, timing, e := s.classifyRaw(ctx, m, timing, texts)
	if e != nil {
		return nil, timing, e
	}
	results := make([]*Classification, len(texts))
	for i := range texts {
		results[i] = newResult(task, m, timing, out.TokensIn[i], out.TokensUsed[i])
		results[i].Prediction = prediction(out, i, opts)
	}
	return results, timing, nil
}

// prediction reads text i of a checked classifier answer under the request's options.
func prediction(out *Output, i int, opts Options) *Prediction {
	k := len(out.Labels)
	row := out.Probabilities[i*k : (i+1)*k]
	best := argmax(row)
	p := &Prediction{Label: out.Labels[best], PredictedLabel: out.Labels[best], Confidence: row[best]}
	if float64(row[best]) < opts.ConfidenceThreshold {
		p.Label, p.BelowThreshold = UnknownLabel, true
	}
	if opts.ReturnProbabilities {
		p.Probabilities = make(map[string]float32, k)
		for j, prob := range row {
			p.Probabilities[out.Labels[j]] = prob
		}
	}
	if out.Unsafe != nil {
		p.Unsafe, p.UnsafeScore = &out.Unsafe[i], &out.UnsafeScore[i]
	}
	p.NeedsReview = out.NeedsReview != nil && out.NeedsReview[i]
	return p
}

func (s *Server) runExtractor(ctx context.Context, m *LoadedModel, timing TaskTiming, texts []string) ([]*Classification, TaskTiming, *apiError) {
	task := timing.Task
	start := time.Now()
	out, err := m.Extractor.ExtractEntities(texts)
	timing.InferenceMS = msSince(start)
	s.metrics.observeInference(m.Info.ID, time.Since(start))
	if err != nil {
		return nil, timing, s.modelFailure(ctx, task, m, err)
	}
	if msg := checkEntityOutput(out, len(texts)); msg != "" {
		return nil, timing, s.invalidOutput(ctx, task, m, msg)
	}
	s.metrics.observeTexts(task, len(texts))
	timing.TokensUsed = sum(out.TokensUsed)
	results := make([]*Classification, len(texts))
	for i := range texts {
		results[i] = newResult(task, m, timing, out.TokensIn[i], out.TokensUsed[i])
		results[i].Entities = append([]Entity{}, out.Entities[i]...) // present even when empty
	}
	return results, timing, nil
}

func argmax(row []float32) int {
	best := 0
	for j, p := range row {
		if p > row[best] {
			best = j
		}
	}
	return best
}

func newResult(task string, m *LoadedModel, timing TaskTiming, tokensIn, tokensUsed int) *Classification {
	return &Classification{Task: task, Model: m.Info.ID, TokensIn: tokensIn, TokensUsed: tokensUsed,
		Truncated: tokensUsed < tokensIn, InferenceMS: share(timing, tokensUsed)}
}

func sum(values []int) int {
	total := 0
	for _, v := range values {
		total += v
	}
	return total
}

// share splits a batch's measured time in proportion to the tokens each text used.
func share(t TaskTiming, tokens int) float64 {
	ms := t.InferenceMS / float64(t.Texts)
	if t.TokensUsed > 0 {
		ms = t.InferenceMS * float64(tokens) / float64(t.TokensUsed)
	}
	return math.Round(ms*1000) / 1000 // microseconds: finer digits would be noise
}

// checkOutput guards the JSON encoder and the argmax against a malformed or non-finite model answer.
func checkOutput(out *Output, n int) string {
	switch {
	case out == nil:
		return "no output"
	case len(out.Labels) == 0:
		return "no labels"
	case len(out.Probabilities) != n*len(out.Labels):
		return "probabilities do not match texts x labels"
	case len(out.TokensIn) != n || len(out.TokensUsed) != n:
		return "token counts do not match the number of texts"
	case out.Unsafe != nil && (len(out.Unsafe) != n || len(out.UnsafeScore) != n):
		return "unsafe verdicts do not match the number of texts"
	case out.NeedsReview != nil && len(out.NeedsReview) != n:
		return "review verdicts do not match the number of texts"
	case out.Logits != nil && len(out.Logits) != len(out.Probabilities):
		return "logits do not match the probabilities"
	}
	for _, v := range out.Logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return "non-finite logits"
		}
	}
	for _, values := range [][]float32{out.Probabilities, out.UnsafeScore} {
		for _, p := range values {
			if !probability(p) {
				return "non-finite or out-of-range probabilities"
			}
		}
	}
	return ""
}

func checkEntityOutput(out *EntityOutput, n int) string {
	switch {
	case out == nil:
		return "no output"
	case len(out.Entities) != n:
		return "entity lists do not match the number of texts"
	case len(out.TokensIn) != n || len(out.TokensUsed) != n:
		return "token counts do not match the number of texts"
	}
	for _, row := range out.Entities {
		for _, e := range row {
			if !probability(e.Score) || e.Start < 0 || e.End < e.Start {
				return "an entity has a non-finite or out-of-range score, or an inverted span"
			}
		}
	}
	return ""
}

func probability(p float32) bool {
	return !math.IsNaN(float64(p)) && !math.IsInf(float64(p), 0) && p >= 0 && p <= 1.0001
}
