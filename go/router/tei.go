package router

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
)

// The text-embeddings-inference (TEI) routes: POST /predict and POST /embed, with TEI's request and
// response shapes so TEI clients work unchanged. Errors keep this API's {"error": {code, message}} body.

type teiPredictRequest struct {
	// Inputs is TEI's PredictInput: "text" (one input), ["text"] (one input), ["a", "b"] (one text pair)
	// or [["t1"], ["t2"], ...] (a batch).
	Inputs    json.RawMessage `json:"inputs"`
	Truncate  bool            `json:"truncate"`
	RawScores bool            `json:"raw_scores"`
}

// teiPrediction is one label's score; TEI answers every label, best first.
type teiPrediction struct {
	Score float32 `json:"score"`
	Label string  `json:"label"`
}

type teiEmbedRequest struct {
	Inputs    json.RawMessage `json:"inputs"` // "text" or ["t1", "t2"]
	Truncate  bool            `json:"truncate"`
	Normalize *bool           `json:"normalize"` // default true, as in TEI
}

var errPair = errorf(http.StatusBadRequest, codeInvalidRequest,
	`inputs: text pairs are not supported (lorakit classifiers read one text); a batch is [["t1"], ["t2"]]`)

// parsePredictInputs decodes TEI's PredictInput; batch reports whether the answer is a list per input.
func parsePredictInputs(raw json.RawMessage) (texts []string, batch bool, e *apiError) {
	if absent(raw) {
		return nil, false, errorf(http.StatusBadRequest, codeInvalidRequest, "inputs is required")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, false, nil
	}
	var flat Texts
	err := json.Unmarshal(raw, &flat)
	if e := nullTextAPIError(err); e != nil {
		return nil, false, e
	}
	if err == nil {
		switch len(flat) {
		case 1:
			return flat, false, nil
		case 2:
			return nil, false, errPair
		}
		return nil, false, errorf(http.StatusBadRequest, codeInvalidRequest,
			`inputs: want a string, a pair [string, string] or a batch [[string], ...], got a list of %d strings`, len(flat))
	}
	var nested []Texts
	err = json.Unmarshal(raw, &nested)
	if e := nullTextAPIError(err); e != nil {
		return nil, false, e
	}
	if err != nil || len(nested) == 0 {
		return nil, false, errorf(http.StatusBadRequest, codeInvalidRequest,
			`inputs is required: a string, or a batch [["t1"], ["t2"], ...]`)
	}
	for _, seq := range nested {
		switch len(seq) {
		case 1:
			texts = append(texts, seq[0])
		case 2:
			return nil, false, errPair
		default:
			return nil, false, errorf(http.StatusBadRequest, codeInvalidRequest, "inputs: each batch entry is [string], got %d strings", len(seq))
		}
	}
	return texts, true, nil
}

// parseEmbedInputs decodes TEI's Input: one string or a list of strings.
func parseEmbedInputs(raw json.RawMessage) ([]string, *apiError) {
	var one string
	if !absent(raw) && json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many Texts
	if absent(raw) {
		return nil, errorf(http.StatusBadRequest, codeInvalidRequest, "inputs is required: a string or a list of strings")
	}
	err := json.Unmarshal(raw, &many)
	if e := nullTextAPIError(err); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, codeInvalidRequest, "inputs is required: a string or a list of strings")
	}
	return many, nil
}

// absent is a missing or null JSON value (which would decode into an empty string without error).
func absent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// tooLong answers TEI's validation error for an input the model had to truncate when truncate is false.
func tooLong(m *LoadedModel, tokensIn, tokensUsed []int) *apiError {
	for i := range tokensIn {
		if tokensIn[i] > tokensUsed[i] {
			return errorf(http.StatusRequestEntityTooLarge, codeInputTooLong,
				"input %d: `inputs` must have less than %d tokens. Given: %d (set truncate to true to truncate)",
				i, m.Info.Manifest.MaxSeqLen, tokensIn[i])
		}
	}
	return nil
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	var req teiPredictRequest
	if e := decodeJSON(w, r, s.cfg.Limits.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	texts, batch, e := parsePredictInputs(req.Inputs)
	if e == nil {
		e = s.validateTexts("inputs", texts)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	g, m, task := s.compatModel(w, rolePredict, s.cfg.Compat.Predict)
	if g == nil {
		return
	}
	defer g.release()
	out, _, e := s.classifyRaw(r.Context(), m, TaskTiming{Task: task, Model: m.Info.ID, Texts: len(texts)}, texts)
	if e == nil && !req.Truncate {
		e = tooLong(m, out.TokensIn, out.TokensUsed)
	}
	if e == nil && req.RawScores && out.Logits == nil {
		e = errorf(http.StatusBadRequest, codeInvalidRequest, "model %s does not report raw scores", m.Info.ID)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	scores := out.Probabilities
	if req.RawScores {
		scores = out.Logits
	}
	k := len(out.Labels)
	answers := make([][]teiPrediction, len(texts))
	for i := range texts {
		row := make([]teiPrediction, k)
		for j := range k {
			row[j] = teiPrediction{Score: scores[i*k+j], Label: out.Labels[j]}
		}
		sort.SliceStable(row, func(a, b int) bool { return row[a].Score > row[b].Score })
		answers[i] = row
	}
	if batch {
		writeJSON(w, http.StatusOK, answers)
		return
	}
	writeJSON(w, http.StatusOK, answers[0])
}

func (s *Server) handleTEIEmbed(w http.ResponseWriter, r *http.Request) {
	var req teiEmbedRequest
	if e := decodeJSON(w, r, s.cfg.Limits.MaxBodyBytes, &req); e != nil {
		writeError(w, e)
		return
	}
	texts, e := parseEmbedInputs(req.Inputs)
	if e == nil {
		e = s.validateTexts("inputs", texts)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	g, m, task := s.compatModel(w, roleEmbed, s.cfg.Compat.Embed)
	if g == nil {
		return
	}
	defer g.release()
	out, _, e := s.embed(r.Context(), m, task, texts)
	if e == nil && !req.Truncate {
		e = tooLong(m, out.TokensIn, out.TokensUsed)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	normalize := req.Normalize == nil || *req.Normalize
	vectors := make([][]float32, len(texts))
	for i := range vectors {
		vectors[i] = out.Values[i*out.Dim : (i+1)*out.Dim]
		if normalize {
			l2Normalize(vectors[i])
		}
	}
	writeJSON(w, http.StatusOK, vectors)
}

// l2Normalize scales v to unit length in place (a zero vector stays zero); a no-op up to rounding for
// models that already normalise, so normalize=true is right for every model.
func l2Normalize(v []float32) {
	var sq float64
	for _, x := range v {
		sq += float64(x) * float64(x)
	}
	if sq == 0 {
		return
	}
	n := math.Sqrt(sq)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
}
