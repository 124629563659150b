package router

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
)

// POST /api/v1/predict_fewshot classifies one text with a generative model whose prompt also holds labelled
// examples, into the request's labels or the model's (docs/generative.md "Few-shot labels").

type fewShotExample struct {
	Document *string `json:"document"`
	Label    *string `json:"label"`
}

type fewShotOptions struct {
	// ConfidenceThreshold works as in Options; the distribution is always returned (the labels are the request's).
	ConfidenceThreshold float64 `json:"confidence_threshold"`
}

type fewShotRequest struct {
	Model    string            `json:"model"` // serving task or model id; "" = the only generative model
	Text     *string           `json:"text"`
	Examples []*fewShotExample `json:"examples"`
	Labels   []*string         `json:"labels"` // nil = the model's labels, then new example labels
	Options  fewShotOptions    `json:"options"`
}

type fewShotResponse struct {
	*Classification
	// Labels is the label set scored, in order; Scores are their answer log-probabilities.
	Labels     []string           `json:"labels"`
	Scores     map[string]float32 `json:"scores,omitempty"`
	Examples   int                `json:"examples"`
	TotalMS    float64            `json:"total_ms"`
	Generation uint64             `json:"generation"`
}

func (s *Server) handleFewShot(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req fewShotRequest
	if e := decodeJSON(w, r, s.cfg.Limits.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	examples, labels, e := s.validateFewShot(&req)
	if e != nil {
		writeError(w, e)
		return
	}
	g := s.servingOrUnavailable(w)
	if g == nil {
		return
	}
	defer g.release()
	m, task, e := resolveGenerative(g, req.Model)
	if e == nil && labels == nil {
		e = s.checkLabelCount(m, examples)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	timing := TaskTiming{Task: task, Model: m.Info.ID, Texts: 1}
	out, timing, e := s.fewShot(r.Context(), m, timing, *req.Text, examples, labels)
	if e != nil {
		writeError(w, e)
		return
	}
	c := newResult(task, m, timing, out.TokensIn[0], out.TokensUsed[0])
	c.Prediction = prediction(out, 0, Options{ReturnProbabilities: true, ConfidenceThreshold: req.Options.ConfidenceThreshold})
	c.Unsafe, c.UnsafeScore = nil, nil // unsafe labels are the model's; a request's label set has none
	resp := fewShotResponse{Classification: c, Labels: out.Labels, Examples: len(examples), Generation: g.id}
	if out.Logits != nil {
		resp.Scores = make(map[string]float32, len(out.Labels))
		for j, l := range out.Labels {
			resp.Scores[l] = out.Logits[j]
		}
	}
	resp.TotalMS = msSince(start)
	writeJSON(w, http.StatusOK, resp)
}

// validateFewShot applies the request limits before any model work and returns the examples and labels
// (nil when the request names none).
func (s *Server) validateFewShot(req *fewShotRequest) ([]Example, []string, *apiError) {
	lim := s.cfg.Limits
	if req.Text == nil {
		return nil, nil, errorf(http.StatusBadRequest, codeInvalidRequest, "text is required")
	}
	if e := checkThreshold(req.Options.ConfidenceThreshold); e != nil {
		return nil, nil, e
	}
	if len(*req.Text) > lim.MaxTextBytes {
		return nil, nil, errorf(http.StatusRequestEntityTooLarge, codeTextTooLarge, "text has %d bytes, the limit is %d", len(*req.Text), lim.MaxTextBytes)
	}
	if len(req.Examples) > lim.MaxExamples {
		return nil, nil, errorf(http.StatusRequestEntityTooLarge, codeBatchTooLarge, "%d examples exceed the limit of %d", len(req.Examples), lim.MaxExamples)
	}
	examples := make([]Example, len(req.Examples))
	for i, ex := range req.Examples {
		switch {
		case ex == nil:
			return nil, nil, errorf(http.StatusBadRequest, codeInvalidRequest, "examples[%d] is null: every example is {\"document\", \"label\"}", i)
		case ex.Document == nil || ex.Label == nil:
			return nil, nil, errorf(http.StatusBadRequest, codeInvalidRequest, "examples[%d] needs both document and label", i)
		case *ex.Label == "":
			return nil, nil, errorf(http.StatusBadRequest, codeInvalidRequest, "examples[%d].label is empty", i)
		case len(*ex.Document) > lim.MaxTextBytes || len(*ex.Label) > lim.MaxTextBytes:
			return nil, nil, errorf(http.StatusRequestEntityTooLarge, codeTextTooLarge, "examples[%d] has a field over the limit of %d bytes", i, lim.MaxTextBytes)
		}
		examples[i] = Example{Document: *ex.Document, Label: *ex.Label}
	}
	if req.Labels == nil {
		return examples, nil, nil
	}
	labels, e := checkLabels(req.Labels, lim)
	if e != nil {
		return nil, nil, e
	}
	for i, ex := range examples {
		if !slices.Contains(labels, ex.Label) {
			return nil, nil, errorf(http.StatusBadRequest, codeInvalidRequest, "examples[%d].label %q is not one of the labels", i, ex.Label)
		}
	}
	return examples, labels, nil
}

func checkLabels(raw []*string, lim Limits) ([]string, *apiError) {
	switch {
	case len(raw) == 0:
		return nil, errorf(http.StatusBadRequest, codeInvalidRequest, "labels must not be empty (omit it for the model's labels)")
	case len(raw) > lim.MaxLabels:
		return nil, errorf(http.StatusRequestEntityTooLarge, codeBatchTooLarge, "%d labels exceed the limit of %d", len(raw), lim.MaxLabels)
	}
	labels := make([]string, len(raw))
	for i, l := range raw {
		switch {
		case l == nil || *l == "":
			return nil, errorf(http.StatusBadRequest, codeInvalidRequest, "labels[%d] must be a non-empty string", i)
		case len(*l) > lim.MaxTextBytes:
			return nil, errorf(http.StatusRequestEntityTooLarge, codeTextTooLarge, "labels[%d] has %d bytes, the limit is %d", i, len(*l), lim.MaxTextBytes)
		case slices.Contains(labels[:i], *l):
			return nil, errorf(http.StatusBadRequest, codeInvalidRequest, "label %q appears twice", *l)
		}
		labels[i] = *l
	}
	return labels, nil
}

// checkLabelCount bounds the default label set: the model's labels plus each new example label.
func (s *Server) checkLabelCount(m *LoadedModel, examples []Example) *apiError {
	labels := slices.Clone(m.Info.Manifest.Labels)
	for _, ex := range examples {
		if !slices.Contains(labels, ex.Label) {
			labels = append(labels, ex.Label)
		}
	}
	if len(labels) > s.cfg.Limits.MaxLabels {
		return errorf(http.StatusRequestEntityTooLarge, codeBatchTooLarge, "the model's and the examples' labels are %d, the limit is %d", len(labels), s.cfg.Limits.MaxLabels)
	}
	return nil
}

// resolveGenerative finds the generative model a request names, or the only one loaded when it names none.
func resolveGenerative(g *generation, name string) (*LoadedModel, string, *apiError) {
	return resolveOfKind(g, name, modelKind{
		task: discovery.TaskGenerativeClassification, singular: "generative classification", plural: "generative",
		wrong: ": few-shot needs a generative classification model",
	})
}

// fewShot runs the model and checks its answer before anything is encoded.
func (s *Server) fewShot(ctx context.Context, m *LoadedModel, timing TaskTiming, text string, examples []Example, labels []string) (*Output, TaskTiming, *apiError) {
	task := timing.Task
	if m.FewShot == nil {
		s.logger.ErrorContext(ctx, "model without a runner for its task", "model", m.Info.ID, "kind", m.Kind())
		return nil, timing, errorf(http.StatusInternalServerError, codeInternal, "model %s cannot classify few-shot", m.Info.ID)
	}
	start := time.Now()
	out, err := m.FewShot.ClassifyFewShot(text, examples, labels)
	timing.InferenceMS = msSince(start)
	s.metrics.observeInference(m.Info.ID, time.Since(start))
	if err != nil {
		return nil, timing, s.modelFailure(ctx, task, m, err)
	}
	if msg := checkOutput(out, 1); msg != "" {
		return nil, timing, s.invalidOutput(ctx, task, m, msg)
	}
	if labels != nil && !slices.Equal(out.Labels, labels) {
		return nil, timing, s.invalidOutput(ctx, task, m, "the labels scored are not the labels requested")
	}
	s.metrics.observeTexts(task, 1)
	timing.TokensUsed = out.TokensUsed[0]
	return out, timing, nil
}
