package lorakit

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Check is the comparison of one output against the golden vectors.
type Check struct {
	// "input_ids", "attention_mask", "tokens_used", then per task: "logits" and "argmax" (and, for a calibrated
	// model, "probabilities" and "needs_review", Row: the text); "token_logits",
	// "argmax" (per token) and "entities"; "embeddings"; for generative classification (no "tokens_used":
	// its token counts are the document's, not the prompt's) "next_token_logits", "label_probs", "argmax"
	// and "fewshot" (Row: the case).
	Output     string
	OK         bool    // within tolerance (logits, embeddings, entity scores) or identical (everything else)
	Mismatches int     // elements (rows for argmax and tokens_used, texts for entities) that differ
	MaxAbsDiff float64 // largest |expected - got|; +Inf when got is NaN or infinite
	Tolerance  float64 // allowed MaxAbsDiff (0 for exact outputs)
	// The worst element (largest difference; first difference for exact outputs); Row is -1 when none. Row is
	// the text; Col the label or dimension, the token for a token argmax, the index within the text's
	// row-major [tokens, labels] block for token logits, and the entity for entities.
	Row, Col      int
	Expected, Got float64
	Detail        string // why the shapes disagree (nothing was compared), or the first entity difference
}

// ParityReport is the outcome of recomputing every golden output.
type ParityReport struct {
	Checks []Check
	OK     bool
}

func newReport(checks ...[]Check) *ParityReport {
	r := &ParityReport{OK: true}
	for _, group := range checks {
		for _, c := range group {
			r.Checks = append(r.Checks, c)
			r.OK = r.OK && c.OK
		}
	}
	return r
}

// CheckModel tokenizes the golden texts and runs the default task of m with the call of the golden output
// (Classify, ExtractEntities, Embed, or NextTokenLogits, Classify and ClassifyFewShot), then compares token ids exactly, outputs within the tolerance and the
// discrete answers (argmax, entities) exactly. Non-finite outputs (ErrCompute unless m allows them) are a failed
// check. An error means the model could not compute them at all.
func (g *Golden) CheckModel(m *Model) (*ParityReport, error) { return g.CheckAdapter(m, "") }

// CheckAdapter is CheckModel for the named adapter of m ("" = the default task).
func (g *Golden) CheckAdapter(m *Model, adapter string) (*ParityReport, error) {
	enc, err := m.TokenizeWith(adapter, g.Texts)
	if err != nil {
		return nil, err
	}
	var outputs []Check
	switch g.Output {
	case OutputTokenLogits:
		res, err := m.ExtractEntitiesWith(adapter, g.Texts)
		if err != nil {
			return g.nonFinite(enc, "token_logits", err)
		}
		outputs = g.CompareEntityResult(res)
	case OutputNextTokenLogits:
		return g.checkGenerative(m, adapter, enc)
	case OutputEmbeddings:
		res, err := m.EmbedWith(adapter, g.Texts)
		if err != nil {
			return g.nonFinite(enc, "embeddings", err)
		}
		outputs = g.CompareEmbeddings(res)
	default:
		res, err := m.ClassifyWith(adapter, g.Texts)
		if err != nil {
			return g.nonFinite(enc, "logits", err)
		}
		outputs = g.CompareResult(res)
	}
	return newReport(g.CompareEncoding(enc), outputs), nil
}

// nonFinite turns the ErrCompute of a model loaded without AllowNonFinite into a failed check of output (a NaN
// or Inf output is a mismatch, never a pass); any other error is returned as it is.
func (g *Golden) nonFinite(enc *Encoding, output string, err error) (*ParityReport, error) {
	if !errors.Is(err, ErrCompute) {
		return nil, err
	}
	failed := Check{Output: output, Mismatches: -1, MaxAbsDiff: math.Inf(1), Tolerance: g.Tolerance, Row: -1,
		Col: -1, Detail: err.Error()}
	return newReport(g.CompareEncoding(enc), []Check{failed}), nil
}

// CompareEncoding compares token ids and attention masks exactly.
func (g *Golden) CompareEncoding(enc *Encoding) []Check {
	ids := compareExact("input_ids", g.InputIDs, enc.InputIDs, g.NumTexts, g.SeqLen, enc.NumTexts, enc.SeqLen)
	mask := compareExact("attention_mask", g.AttentionMask, enc.AttentionMask, g.NumTexts, g.SeqLen,
		enc.NumTexts, enc.SeqLen)
	return []Check{ids, mask}
}

// CompareResult compares the per-text token counts, the logits (max |diff| <= Tolerance) and the argmax; when
// the golden file or the model is calibrated, also the probabilities and the review verdicts (compareCalibrated).
func (g *Golden) CompareResult(res *Result) []Check {
	logits, argmax := g.compareLogits(res)
	checks := []Check{g.compareTokensUsed(res.TokensUsed), logits, argmax}
	if g.Probabilities != nil || res.Calibration.Calibrated() {
		checks = append(checks, g.compareCalibrated(res)...)
	}
	return checks
}

// compareCalibrated compares the core's calibrated probabilities with the golden ones (within Tolerance) and
// its NeedsReview with the verdicts of the golden probabilities under the golden threshold, except for texts
// whose golden top probability is within Tolerance of the threshold; the two thresholds must agree. A calibrated
// model whose golden file has no probabilities fails: nothing would check its calibration.
func (g *Golden) compareCalibrated(res *Result) []Check {
	if g.Probabilities == nil {
		missing := Check{Output: "probabilities", Mismatches: -1, MaxAbsDiff: math.Inf(1), Tolerance: g.Tolerance,
			Row: -1, Col: -1, Detail: "the model is calibrated (lorakit.json calibration) but golden.safetensors " +
				"has no probabilities: re-export it"}
		return []Check{missing}
	}
	got := res.Probabilities()
	if g.Output != OutputLogits || res.NumTexts != g.NumTexts || res.NumLabels != g.NumLabels ||
		len(got) != len(g.Probabilities) || len(res.NeedsReview) != g.NumTexts {
		return []Check{shapeMismatch("probabilities", g.NumTexts, g.NumLabels, res.NumTexts, res.NumLabels, g.Tolerance),
			shapeMismatch("needs_review", g.NumTexts, 1, len(res.NeedsReview), 1, 0)}
	}
	probs := Check{Output: "probabilities", Tolerance: g.Tolerance, Row: -1, Col: -1}
	review := Check{Output: "needs_review", Row: -1, Col: -1}
	cal := res.Calibration
	if cal.HasReviewThreshold != g.HasReviewThreshold ||
		math.Abs(float64(cal.ReviewThreshold)-g.ReviewThreshold) > 1e-6 {
		review.Mismatches = -1
		review.Detail = fmt.Sprintf("the model's review threshold %s differs from golden %s",
			thresholdText(cal.HasReviewThreshold, float64(cal.ReviewThreshold)),
			thresholdText(g.HasReviewThreshold, g.ReviewThreshold))
	}
	k := g.NumLabels
	for row := range g.NumTexts {
		want := g.Probabilities[row*k : (row+1)*k]
		probs.addRow(row, want, got[row*k:(row+1)*k])
		top := float64(slices.Max(want))
		wantReview := g.HasReviewThreshold && top < g.ReviewThreshold
		borderline := g.HasReviewThreshold && math.Abs(top-g.ReviewThreshold) <= g.Tolerance
		if wantReview == res.NeedsReview[row] || borderline {
			continue
		}
		if review.Mismatches == 0 {
			review.Row, review.Expected, review.Got = row, boolValue(wantReview), boolValue(res.NeedsReview[row])
		}
		if review.Mismatches >= 0 {
			review.Mismatches++
		}
		review.MaxAbsDiff = 1
	}
	probs.OK = probs.Mismatches == 0
	review.OK = review.Mismatches == 0
	return []Check{probs, review}
}

func thresholdText(has bool, t float64) string {
	if !has {
		return "none"
	}
	return strconv.FormatFloat(t, 'g', -1, 32)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (g *Golden) compareTokensUsed(tokensUsed []int) Check {
	used := make([]int64, len(tokensUsed))
	for i, n := range tokensUsed {
		used[i] = int64(n)
	}
	return compareExact("tokens_used", g.tokensPerText(), used, g.NumTexts, 1, len(used), 1)
}

// tokensPerText is the number of real tokens of each golden row (the sum of its attention mask).
func (g *Golden) tokensPerText() []int64 {
	counts := make([]int64, g.NumTexts)
	for i := range counts {
		for _, bit := range g.AttentionMask[i*g.SeqLen : (i+1)*g.SeqLen] {
			counts[i] += bit
		}
	}
	return counts
}

func shapeMismatch(output string, wantRows, wantCols, gotRows, gotCols int, tolerance float64) Check {
	return Check{
		Output: output, Mismatches: -1, MaxAbsDiff: math.Inf(1), Tolerance: tolerance, Row: -1, Col: -1,
		Detail: fmt.Sprintf("shape [%d %d] differs from golden [%d %d]", gotRows, gotCols, wantRows, wantCols),
	}
}

func compareExact(output string, want, got []int64, wantRows, wantCols, gotRows, gotCols int) Check {
	if wantRows != gotRows || wantCols != gotCols || len(got) != len(want) {
		return shapeMismatch(output, wantRows, wantCols, gotRows, gotCols, 0)
	}
	c := Check{Output: output, Row: -1, Col: -1}
	for i := range want {
		if want[i] == got[i] {
			continue
		}
		if c.Mismatches == 0 {
			c.Row, c.Col, c.Expected, c.Got = i/wantCols, i%wantCols, float64(want[i]), float64(got[i])
		}
		c.Mismatches++
		c.MaxAbsDiff = math.Max(c.MaxAbsDiff, math.Abs(float64(want[i])-float64(got[i])))
	}
	c.OK = c.Mismatches == 0
	return c
}

func (g *Golden) compareLogits(res *Result) (logits, argmax Check) {
	if g.Output != OutputLogits || res.NumTexts != g.NumTexts || res.NumLabels != g.NumLabels ||
		len(res.Logits) != len(g.Logits) {
		return shapeMismatch("logits", g.NumTexts, g.NumLabels, res.NumTexts, res.NumLabels, g.Tolerance),
			shapeMismatch("argmax", g.NumTexts, 1, res.NumTexts, 1, 0)
	}
	logits = Check{Output: "logits", Tolerance: g.Tolerance, Row: -1, Col: -1}
	for row := range g.NumTexts {
		span := g.NumLabels
		logits.addRow(row, g.Logits[row*span:(row+1)*span], res.Logits[row*span:(row+1)*span])
	}
	logits.OK = logits.Mismatches == 0

	argmax = Check{Output: "argmax", Row: -1, Col: -1}
	for row := 0; row < g.NumTexts; row++ {
		want := argmaxOf(g.Logits[row*g.NumLabels : (row+1)*g.NumLabels])
		got := argmaxOf(res.Logits[row*g.NumLabels : (row+1)*g.NumLabels])
		if want == got {
			continue
		}
		if argmax.Mismatches == 0 {
			argmax.Row, argmax.Expected, argmax.Got = row, float64(want), float64(got)
		}
		argmax.Mismatches++
		argmax.MaxAbsDiff = 1
	}
	argmax.OK = argmax.Mismatches == 0
	return logits, argmax
}

// addRow compares one row within c.Tolerance, keeping the worst element (Col is its index within the row).
func (c *Check) addRow(row int, want, got []float32) {
	for col := range want {
		diff := math.Abs(float64(want[col]) - float64(got[col]))
		if math.IsNaN(diff) {
			diff = math.Inf(1) // a NaN must count as the worst possible difference, never as "not greater"
		}
		if diff > c.Tolerance {
			c.Mismatches++
		}
		if c.Row < 0 || diff > c.MaxAbsDiff {
			c.MaxAbsDiff = diff
			c.Row, c.Col = row, col
			c.Expected, c.Got = float64(want[col]), float64(got[col])
		}
	}
}

// argmaxOf returns the first index of the largest value; a NaN wins, as in numpy, so a NaN row never agrees
// with a finite golden row by accident.
func argmaxOf(row []float32) int {
	best := 0
	for j, v := range row {
		if math.IsNaN(float64(v)) {
			return j
		}
		if v > row[best] {
			best = j
		}
	}
	return best
}
