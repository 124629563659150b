package router

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"time"

	"lorakit/discovery"
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
	Texts    []string `json:"texts"`
	TaskType string   `json:"task_type"`
	Options  Options  `json:"options"`
}

// Classification is the answer for one text and one task.
type Classification struct {
	Task           string             `json:"task"`  // the name the request routed by
	Model          string             `json:"model"` // ID of the model that answered
	Label          string             `json:"label"`
	PredictedLabel string             `json:"predicted_label"`
	Confidence     float32            `json:"confidence"`
	BelowThreshold bool               `json:"below_threshold"`
	Probabilities  map[string]float32 `json:"probabilities,omitempty"`
	TokensIn       int                `json:"tokens_in"`
	TokensUsed     int                `json:"tokens_used"`
	Truncated      bool               `json:"truncated"`
	// InferenceMS is this text's share of the measured batch inference time of its task, split in
	// proportion to tokens used (the compute a text costs); for a single text it is the measured time.
	InferenceMS float64 `json:"inference_ms"`
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
	g := s.cur.acquire()
	if g == nil {
		writeError(w, errorf(http.StatusServiceUnavailable, codeNoModels, "no models are loaded"))
		return
	}
	defer g.release()
	m := g.resolve(req.Task)
	if m == nil {
		writeError(w, unknownTask(g, req.Task))
		return
	}
	results, _, e := s.run(m, req.Task, []string{*req.Text}, req.Options)
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
	g := s.cur.acquire()
	if g == nil {
		writeError(w, errorf(http.StatusServiceUnavailable, codeNoModels, "no models are loaded"))
		return
	}
	defer g.release()

	resp := batchResponse{TaskType: req.TaskType, Generation: g.id, Results: make([]batchItem, len(req.Texts))}
	for i := range resp.Results {
		resp.Results[i].Index = i
	}
	if req.TaskType == discovery.AllTasks {
		if len(g.tasks) == 0 {
			writeError(w, errorf(http.StatusServiceUnavailable, codeNoModels, "no serving tasks are loaded"))
			return
		}
		for i := range resp.Results {
			resp.Results[i].Tasks = make(map[string]*Classification, len(g.tasks))
		}
		for _, task := range g.tasks { // sequential: each call already uses every compute thread
			results, timing, e := s.run(g.byTask[task], task, req.Texts, req.Options)
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
		results, timing, e := s.run(m, req.TaskType, req.Texts, req.Options)
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
	lim := s.cfg.Limits
	switch {
	case task == "":
		return errorf(http.StatusBadRequest, codeInvalidRequest, "a task is required")
	case len(texts) == 0:
		return errorf(http.StatusBadRequest, codeInvalidRequest, "texts must not be empty")
	case len(texts) > lim.MaxBatch:
		return errorf(http.StatusRequestEntityTooLarge, codeBatchTooLarge, "%d texts exceed the batch limit of %d", len(texts), lim.MaxBatch)
	case opts.ConfidenceThreshold < 0 || opts.ConfidenceThreshold > 1 || math.IsNaN(opts.ConfidenceThreshold):
		return errorf(http.StatusBadRequest, codeInvalidRequest, "confidence_threshold must be within [0, 1], got %g", opts.ConfidenceThreshold)
	}
	for i, t := range texts {
		if len(t) > lim.MaxTextBytes {
			return errorf(http.StatusRequestEntityTooLarge, codeTextTooLarge, "text %d has %d bytes, the limit is %d", i, len(t), lim.MaxTextBytes)
		}
	}
	return nil
}

func unknownTask(g *generation, name string) *apiError {
	return errorf(http.StatusNotFound, codeUnknownTask, "no task or model named %q (tasks: %s, or %q)",
		name, strings.Join(g.tasks, ", "), discovery.AllTasks)
}

// run classifies texts with one model and turns its output into per-text results.
func (s *Server) run(m *LoadedModel, task string, texts []string, opts Options) ([]*Classification, TaskTiming, *apiError) {
	timing := TaskTiming{Task: task, Model: m.Info.ID, Texts: len(texts)}
	start := time.Now()
	out, err := m.Classifier.Classify(texts)
	timing.InferenceMS = msSince(start)
	if err != nil {
		if errors.Is(err, ErrInvalidInput) {
			return nil, timing, errorf(http.StatusBadRequest, codeInvalidInput, "task %s: %v", task, err)
		}
		s.logger.Error("classification failed", "task", task, "model", m.Info.ID, "error", err.Error())
		return nil, timing, errorf(http.StatusInternalServerError, codeModelError, "task %s: model %s failed: %v", task, m.Info.ID, err)
	}
	if msg := checkOutput(out, len(texts)); msg != "" {
		s.logger.Error("invalid model output", "task", task, "model", m.Info.ID, "problem", msg)
		return nil, timing, errorf(http.StatusInternalServerError, codeInvalidOutput, "task %s: model %s: %s", task, m.Info.ID, msg)
	}
	s.metrics.observeTexts(task, len(texts))
	for _, n := range out.TokensUsed {
		timing.TokensUsed += n
	}
	k := len(out.Labels)
	results := make([]*Classification, len(texts))
	for i := range texts {
		row := out.Probabilities[i*k : (i+1)*k]
		best := 0
		for j, p := range row {
			if p > row[best] {
				best = j
			}
		}
		c := &Classification{
			Task: task, Model: m.Info.ID, Label: out.Labels[best], PredictedLabel: out.Labels[best],
			Confidence: row[best], TokensIn: out.TokensIn[i], TokensUsed: out.TokensUsed[i],
			Truncated: out.TokensUsed[i] < out.TokensIn[i], InferenceMS: share(timing, out.TokensUsed[i]),
		}
		if float64(row[best]) < opts.ConfidenceThreshold {
			c.Label, c.BelowThreshold = UnknownLabel, true
		}
		if opts.ReturnProbabilities {
			c.Probabilities = make(map[string]float32, k)
			for j, p := range row {
				c.Probabilities[out.Labels[j]] = p
			}
		}
		results[i] = c
	}
	return results, timing, nil
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
	}
	for _, p := range out.Probabilities {
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) || p < 0 || p > 1.0001 {
			return "non-finite or out-of-range probabilities"
		}
	}
	return ""
}
