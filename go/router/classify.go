package router

import (
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
)

// UnknownLabel is the label of a result whose confidence is below the requested threshold.
const UnknownLabel = "unknown"

// Options are the per-request classification options; every one changes the answer.
type Options struct {
	// ReturnProbabilities adds the full distribution, keyed by label, to every result.
	ReturnProbabilities bool `json:"return_probabilities"`
	// ConfidenceThreshold in [0, 1]: when the top probability is below it, label is "unknown" and
	// below_threshold is true; predicted_label and confidence still report the top class. 0 disables it.
	ConfidenceThreshold float64 `json:"confidence_threshold"`
}

type classifyRequest struct {
	Text    *string `json:"text"`
	Task    string  `json:"task"`
	Options Options `json:"options"`
}

type batchRequest struct {
	Texts    Texts   `json:"texts"`
	TaskType string  `json:"task_type"`
	Options  Options `json:"options"`
}

// Classification is the answer for one text and one task: a Prediction for sequence classification, the
// Entities for token classification.
type Classification struct {
	Task  string `json:"task"`  // the name the request routed by
	Model string `json:"model"` // ID of the model that answered
	// *Prediction is nil for token classification, and then none of its fields appear.
	*Prediction
	// Entities (token classification) is present, possibly empty; nil (absent) for sequence classification.
	Entities   []Entity `json:"entities,omitzero"`
	TokensIn   int      `json:"tokens_in"`
	TokensUsed int      `json:"tokens_used"`
	Truncated  bool     `json:"truncated"`
	// InferenceMS is this text's share of the measured batch inference time of its task, split in
	// proportion to tokens used (the compute a text costs); for a single text it is the measured time.
	InferenceMS float64 `json:"inference_ms"`
}

// Prediction is the sequence-classification part of a Classification.
type Prediction struct {
	Label          string             `json:"label"`
	PredictedLabel string             `json:"predicted_label"`
	Confidence     float32            `json:"confidence"`
	BelowThreshold bool               `json:"below_threshold"`
	Probabilities  map[string]float32 `json:"probabilities,omitempty"`
	// Unsafe (the top label is a declared unsafe label) and UnsafeScore (their summed probability) are
	// present only when the model's manifest declares unsafe_labels.
	Unsafe      *bool    `json:"unsafe,omitempty"`
	UnsafeScore *float32 `json:"unsafe_score,omitempty"`
	// NeedsReview is true when Confidence is below the model's calibration review_threshold (lorakit.json
	// "calibration"); always false for a model without one. Independent of the request's confidence_threshold.
	NeedsReview bool `json:"needs_review"`
}

type classifyResponse struct {
	*Classification
	TotalMS    float64 `json:"total_ms"`
	Generation uint64  `json:"generation"`
}

type batchItem struct {
	Index int `json:"index"`
	*Classification
	Tasks map[string]*Classification `json:"tasks,omitempty"` // task_type "all": one result per task
}

// TaskTiming is the measured inference of one task over the whole batch.
type TaskTiming struct {
	Task        string  `json:"task"`
	Model       string  `json:"model"`
	Texts       int     `json:"texts"`
	TokensUsed  int     `json:"tokens_used"`
	InferenceMS float64 `json:"inference_ms"`
}

type batchResponse struct {
	TaskType   string      `json:"task_type"`
	Generation uint64      `json:"generation"`
	Results    []batchItem `json:"results"`
	Timing     struct {
		TotalMS float64      `json:"total_ms"`
		Tasks   []TaskTiming `json:"tasks"`
	} `json:"timing"`
}

func (s *Server) handleClassify(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req classifyRequest
	if e := decodeJSON(w, r, s.cfg.Limits.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	if req.Text == nil {
		writeError(w, errorf(http.StatusBadRequest, codeInvalidRequest, "text is required"))
		return
	}
	if req.Task == discovery.AllTasks {
		writeError(w, errorf(http.StatusBadRequest, codeInvalidRequest, "task %q answers with one result per task: use /api/v1/classify/batch", discovery.AllTasks))
		return
	}
	if e := s.validate([]string{*req.Text}, req.Task, req.Options); e != nil {
		writeError(w, e)
		return
	}
	g := s.servingOrUnavailable(w)
	if g == nil {
		return
	}
	defer g.release()
	m := g.resolve(req.Task)
	if m == nil {
		writeError(w, unknownTask(g, req.Task))
		return
	}
	results, _, e := s.run(r.Context(), m, req.Task, []string{*req.Text}, req.Options)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, classifyResponse{Classification: results[0], TotalMS: msSince(start), Generation: g.id})
}

func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req batchRequest
	if e := decodeJSON(w, r, s.cfg.Limits.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	if req.Texts == nil {
		writeError(w, errorf(http.StatusBadRequest, codeInvalidRequest, "texts is required"))
		return
	}
	if e := s.validate(req.Texts, req.TaskType, req.Options); e != nil {
		writeError(w, e)
		return
	}
	g := s.servingOrUnavailable(w)
	if g == nil {
		return
	}
	defer g.release()

	resp := batchResponse{TaskType: req.TaskType, Generation: g.id, Results: make([]batchItem, len(req.Texts))}
	for i := range resp.Results {
		resp.Results[i].Index = i
	}
	if req.TaskType == discovery.AllTasks {
		tasks := g.tasksOf(classifierKinds...)
		if len(tasks) == 0 {
			writeError(w, errorf(http.StatusServiceUnavailable, codeNoModels, "no classification tasks are loaded"))
			return
		}
		for i := range resp.Results {
			resp.Results[i].Tasks = make(map[string]*Classification, len(tasks))
		}
		for _, task := range tasks { // sequential: each call already uses every compute thread
			results, timing, e := s.run(r.Context(), g.byTask[task], task, req.Texts, req.Options)
			if e != nil {
				writeError(w, e)
				return
			}
			for i, c := range results {
				resp.Results[i].Tasks[task] = c
			}
			resp.Timing.Tasks = append(resp.Timing.Tasks, timing)
		}
	} else {
		m := g.resolve(req.TaskType)
		if m == nil {
			writeError(w, unknownTask(g, req.TaskType))
			return
		}
		results, timing, e := s.run(r.Context(), m, req.TaskType, req.Texts, req.Options)
		if e != nil {
			writeError(w, e)
			return
		}
		for i, c := range results {
			resp.Results[i].Classification = c
		}
		resp.Timing.Tasks = []TaskTiming{timing}
	}
	resp.Timing.TotalMS = msSince(start)
	writeJSON(w, http.StatusOK, resp)
}

// validate applies the request limits before any model work.
func (s *Server) validate(texts []string, task string, opts Options) *apiError {
	switch {
	case task == "":
		return errorf(http.StatusBadRequest, codeInvalidRequest, "a task is required")
	case opts.ConfidenceThreshold < 0 || opts.ConfidenceThreshold > 1 || math.IsNaN(opts.ConfidenceThreshold):
		return errorf(http.StatusBadRequest, codeInvalidRequest, "confidence_threshold must be within [0, 1], got %g", opts.ConfidenceThreshold)
	}
	return s.validateTexts("texts", texts)
}

// validateTexts applies the batch and text limits to one request's texts (field names the list).
func (s *Server) validateTexts(field string, texts []string) *apiError {
	lim := s.cfg.Limits
	switch {
	case len(texts) == 0:
		return errorf(http.StatusBadRequest, codeInvalidRequest, "%s must not be empty", field)
	case len(texts) > lim.MaxBatch:
		return errorf(http.StatusRequestEntityTooLarge, codeBatchTooLarge, "%d texts exceed the batch limit of %d", len(texts), lim.MaxBatch)
	}
	for i, t := range texts {
		if len(t) > lim.MaxTextBytes {
			return errorf(http.StatusRequestEntityTooLarge, codeTextTooLarge, "text %d has %d bytes, the limit is %d", i, len(t), lim.MaxTextBytes)
		}
	}
	return nil
}

// classifierKinds are the manifest task kinds the classify routes (and task_type "all") answer.
var classifierKinds = []string{discovery.TaskSequenceClassification, discovery.TaskTokenClassification,
	discovery.TaskGenerativeClassification}

func unknownTask(g *generation, name string) *apiError {
	tasks := g.tasksOf(classifierKinds...)
	return errorf(http.StatusNotFound, codeUnknownTask, "no task or model named %q (tasks: %s, or %q)",
		name, strings.Join(tasks, ", "), discovery.AllTasks)
}
