package lorakit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/lorakit/lorakit/go/internal/safetensors"
)

// OutputNextTokenLogits is the golden output of generative classification (docs/generative.md): Logits
// [NumTexts, VocabSize] after each prompt, LabelProbs [NumTexts, NumLabels] and the FewShot entries.
const OutputNextTokenLogits = "next_token_logits"

// DefaultProbTolerance applies to label probabilities when golden.safetensors carries no "prob_tolerance".
const DefaultProbTolerance = 1e-4

// FewShotGolden is one few-shot case of a generative golden file: the labels used and their probabilities.
type FewShotGolden struct {
	Text          string    `json:"text"`
	Examples      []Example `json:"examples"`
	Labels        []string  `json:"labels"`
	Probabilities []float32 `json:"probabilities"`
}

// readGenerative reads the next-token logits, the label distributions and the few-shot cases.
func (g *Golden) readGenerative(file *safetensors.File) error {
	var shape []int
	var err error
	if g.Logits, shape, err = file.Float32("logits"); err != nil {
		return err
	}
	if len(shape) != 2 || shape[0] != g.NumTexts || shape[1] == 0 {
		return fmt.Errorf("next-token logits shape %v does not match %d texts", shape, g.NumTexts)
	}
	g.VocabSize = shape[1]
	if g.LabelProbs, shape, err = file.Float32("label_probs"); err != nil {
		return err
	}
	if len(shape) != 2 || shape[0] != g.NumTexts || shape[1] == 0 {
		return fmt.Errorf("label_probs shape %v does not match %d texts", shape, g.NumTexts)
	}
	g.NumLabels = shape[1]
	g.ProbTolerance = DefaultProbTolerance
	if text, ok := file.Metadata["prob_tolerance"]; ok {
		tol, err := strconv.ParseFloat(text, 64)
		if err != nil || !(tol >= 0) || math.IsInf(tol, 0) {
			return fmt.Errorf(`metadata "prob_tolerance" %q is not a finite non-negative number`, text)
		}
		g.ProbTolerance = tol
	}
	// Required, as in the core: without it the few-shot path would go unchecked.
	text, ok := file.Metadata["fewshot"]
	if !ok {
		return errors.New(`next-token logits without metadata "fewshot"`)
	}
	if err := json.Unmarshal([]byte(text), &g.FewShot); err != nil {
		return fmt.Errorf(`metadata "fewshot" is not a JSON list of few-shot cases: %v`, err)
	}
	for i, c := range g.FewShot {
		if len(c.Labels) == 0 || len(c.Probabilities) != len(c.Labels) {
			return fmt.Errorf(`metadata "fewshot" case %d has %d labels and %d probabilities`, i, len(c.Labels),
				len(c.Probabilities))
		}
	}
	return nil
}

// checkGenerative recomputes the next-token logits, the label distributions and every few-shot case.
func (g *Golden) checkGenerative(m *Model, adapter string, enc *Encoding) (*ParityReport, error) {
	logits, err := m.NextTokenLogitsWith(adapter, g.Texts)
	if err != nil {
		return g.nonFinite(enc, "next_token_logits", err)
	}
	res, err := m.ClassifyWith(adapter, g.Texts)
	if err != nil {
		return g.nonFinite(enc, "label_probs", err)
	}
	fewShot := make([]*Result, len(g.FewShot))
	for i, c := range g.FewShot {
		if fewShot[i], err = m.ClassifyFewShotWith(adapter, c.Text, c.Examples, c.Labels); err != nil {
			if !errors.Is(err, ErrCompute) {
				return nil, fmt.Errorf("few-shot case %d: %w", i, err)
			}
			return g.nonFinite(enc, "fewshot", err)
		}
	}
	checks := []Check{g.CompareNextTokenLogits(logits)}
	checks = append(checks, g.CompareLabelProbs(res)...)
	checks = append(checks, g.CompareFewShot(fewShot))
	return newReport(g.CompareEncoding(enc), checks), nil
}

// CompareNextTokenLogits compares [NumTexts, VocabSize] next-token logits within the tolerance.
func (g *Golden) CompareNextTokenLogits(e *Embeddings) Check {
	if g.Output != OutputNextTokenLogits || e.NumTexts != g.NumTexts || e.Dim != g.VocabSize ||
		len(e.Values) != len(g.Logits) {
		return shapeMismatch("next_token_logits", g.NumTexts, g.VocabSize, e.NumTexts, e.Dim, g.Tolerance)
	}
	c := Check{Output: "next_token_logits", Tolerance: g.Tolerance, Row: -1, Col: -1}
	for row := range g.NumTexts {
		c.addRow(row, g.Logits[row*g.VocabSize:(row+1)*g.VocabSize], e.Row(row))
	}
	c.OK = c.Mismatches == 0
	return c
}

// CompareLabelProbs compares each text's label distribution within ProbTolerance and its argmax exactly.
func (g *Golden) CompareLabelProbs(res *Result) []Check {
	probs := res.Probabilities()
	if g.Output != OutputNextTokenLogits || res.NumTexts != g.NumTexts || res.NumLabels != g.NumLabels ||
		len(probs) != len(g.LabelProbs) {
		return []Check{shapeMismatch("label_probs", g.NumTexts, g.NumLabels, res.NumTexts, res.NumLabels, g.ProbTolerance),
			shapeMismatch("argmax", g.NumTexts, 1, res.NumTexts, 1, 0)}
	}
	values := Check{Output: "label_probs", Tolerance: g.ProbTolerance, Row: -1, Col: -1}
	argmax := Check{Output: "argmax", Row: -1, Col: -1}
	k := g.NumLabels
	for row := range g.NumTexts {
		want, got := g.LabelProbs[row*k:(row+1)*k], probs[row*k:(row+1)*k]
		values.addRow(row, want, got)
		if w, o := argmaxOf(want), argmaxOf(got); w != o {
			if argmax.Mismatches == 0 {
				argmax.Row, argmax.Expected, argmax.Got = row, float64(w), float64(o)
			}
			argmax.Mismatches++
			argmax.MaxAbsDiff = 1
		}
	}
	values.OK, argmax.OK = values.Mismatches == 0, argmax.Mismatches == 0
	return []Check{values, argmax}
}

// CompareFewShot compares each few-shot case (results[i] answers g.FewShot[i]): the same labels, the
// probabilities within ProbTolerance and the same choice. Mismatches counts the cases that differ; Row is
// the case and Col the label of the largest difference; Detail describes the first failing case.
func (g *Golden) CompareFewShot(results []*Result) Check {
	c := Check{Output: "fewshot", Tolerance: g.ProbTolerance, Row: -1, Col: -1}
	if len(results) != len(g.FewShot) {
		c.Mismatches, c.MaxAbsDiff = -1, math.Inf(1)
		c.Detail = fmt.Sprintf("%d results for %d few-shot cases", len(results), len(g.FewShot))
		return c
	}
	for i, want := range g.FewShot {
		res := results[i]
		probs := res.Probabilities()
		problem := ""
		switch {
		case res.NumTexts != 1 || !slices.Equal(res.Labels, want.Labels) || len(probs) != len(want.Probabilities):
			problem = fmt.Sprintf("case %d: labels %v, golden %v", i, res.Labels, want.Labels)
			c.MaxAbsDiff = math.Inf(1)
		default:
			before := c.Mismatches
			c.addRow(i, want.Probabilities, probs)
			if c.Mismatches > before {
				c.Mismatches = before // counted per case below
				problem = fmt.Sprintf("case %d: probabilities %v, golden %v", i, probs, want.Probabilities)
			} else if w, o := argmaxOf(want.Probabilities), argmaxOf(probs); w != o {
				problem = fmt.Sprintf("case %d: chose %q, golden %q", i, want.Labels[o], want.Labels[w])
			}
		}
		if problem != "" {
			if c.Mismatches == 0 {
				c.Detail = problem
			}
			c.Mismatches++
		}
	}
	c.OK = c.Mismatches == 0
	return c
}
