package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"

	"github.com/lorakit/lorakit/go/lorakit"
)

func writeText(w io.Writer, dir string, golden *lorakit.Golden, runs []modeRun, ok bool) {
	fmt.Fprintf(w, "%s: %d texts, %s, tolerance %g\n", dir, golden.NumTexts, describeOutput(golden), golden.Tolerance)
	table := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(table, "mode\toutput\tresult\tmax|diff|\tmismatches\tworst")
	failed, total := 0, 0
	for _, r := range runs {
		if r.Report == nil {
			fmt.Fprintf(table, "%s\t-\tskipped\t-\t-\t%s\n", r.Mode, r.Skipped)
			continue
		}
		for _, c := range r.Report.Checks {
			total++
			result := "ok"
			if !c.OK {
				result = "FAIL"
				failed++
			}
			fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Mode, c.Output, result, formatFloat(c.MaxAbsDiff),
				mismatchText(c), worstText(c))
		}
	}
	table.Flush()
	if ok {
		fmt.Fprintf(w, "PASS: %d checks\n", total)
	} else {
		fmt.Fprintf(w, "FAIL: %d of %d checks failed\n", failed, total)
	}
}

// describeOutput names what the golden file holds.
func describeOutput(g *lorakit.Golden) string {
	switch g.Output {
	case lorakit.OutputTokenLogits:
		return fmt.Sprintf("token classification, %d tags", g.NumLabels)
	case lorakit.OutputEmbeddings:
		return fmt.Sprintf("embedding, dim %d", g.Dim)
	case lorakit.OutputNextTokenLogits:
		return fmt.Sprintf("generative classification, %d labels, vocabulary %d, %d few-shot cases, prob tolerance %g",
			g.NumLabels, g.VocabSize, len(g.FewShot), g.ProbTolerance)
	}
	if g.Probabilities != nil {
		threshold := "no review threshold"
		if g.HasReviewThreshold {
			threshold = fmt.Sprintf("review threshold %g", g.ReviewThreshold)
		}
		return fmt.Sprintf("%d labels, calibrated probabilities (%s)", g.NumLabels, threshold)
	}
	return fmt.Sprintf("%d labels", g.NumLabels)
}

func mismatchText(c lorakit.Check) string {
	if c.Mismatches < 0 {
		return "-"
	}
	return strconv.Itoa(c.Mismatches)
}

func worstText(c lorakit.Check) string {
	switch {
	case c.Detail != "":
		return c.Detail
	case c.Row < 0:
		return "-"
	case c.Output == "argmax" && c.Col >= 0:
		return fmt.Sprintf("row %d token %d: expected %g, got %g", c.Row, c.Col, c.Expected, c.Got)
	case c.Output == "argmax" || c.Output == "tokens_used" || c.Output == "needs_review":
		return fmt.Sprintf("row %d: expected %g, got %g", c.Row, c.Expected, c.Got)
	case c.Output == "fewshot":
		return fmt.Sprintf("case %d label %d: expected %s, got %s", c.Row, c.Col, formatValue(c.Expected), formatValue(c.Got))
	default:
		return fmt.Sprintf("row %d col %d: expected %s, got %s", c.Row, c.Col, formatValue(c.Expected),
			formatValue(c.Got))
	}
}

// formatFloat prints a difference to 4 significant digits; formatValue prints an output value exactly as
// the float32 it was, so expected and got never look equal when they differ.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func formatValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 32) }

// jsonFloat keeps NaN and infinities representable: JSON numbers cannot hold them, so they become strings.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return json.Marshal(strconv.FormatFloat(v, 'g', -1, 64))
	}
	return json.Marshal(v)
}

type jsonCheck struct {
	Mode       string    `json:"mode"`
	Output     string    `json:"output"`
	OK         bool      `json:"ok"`
	MaxAbsDiff jsonFloat `json:"max_abs_diff"`
	Tolerance  jsonFloat `json:"tolerance"`
	Mismatches int       `json:"mismatches"`
	Worst      any       `json:"worst"`
	Detail     string    `json:"detail,omitempty"`
}

type jsonWorst struct {
	Row      int       `json:"row"`
	Col      int       `json:"col"`
	Expected jsonFloat `json:"expected"`
	Got      jsonFloat `json:"got"`
}

type jsonReport struct {
	ModelDir  string            `json:"model_dir"`
	OK        bool              `json:"ok"`
	Output    string            `json:"output,omitempty"` // the golden output: logits, token_logits, embeddings or next_token_logits
	NumTexts  int               `json:"num_texts,omitempty"`
	Tolerance jsonFloat         `json:"tolerance,omitempty"`
	Checks    []jsonCheck       `json:"checks"`
	Skipped   map[string]string `json:"skipped,omitempty"`
	Error     string            `json:"error,omitempty"`
}

func writeJSON(w io.Writer, dir string, golden *lorakit.Golden, runs []modeRun, ok bool) {
	report := jsonReport{ModelDir: dir, OK: ok, Output: golden.Output, NumTexts: golden.NumTexts,
		Tolerance: jsonFloat(golden.Tolerance), Checks: []jsonCheck{}}
	for _, r := range runs {
		if r.Report == nil {
			if report.Skipped == nil {
				report.Skipped = map[string]string{}
			}
			report.Skipped[r.Mode] = r.Skipped
			continue
		}
		for _, c := range r.Report.Checks {
			check := jsonCheck{Mode: r.Mode, Output: c.Output, OK: c.OK, MaxAbsDiff: jsonFloat(c.MaxAbsDiff),
				Tolerance: jsonFloat(c.Tolerance), Mismatches: c.Mismatches, Detail: c.Detail}
			if c.Row >= 0 {
				check.Worst = jsonWorst{Row: c.Row, Col: c.Col, Expected: jsonFloat(c.Expected), Got: jsonFloat(c.Got)}
			}
			report.Checks = append(report.Checks, check)
		}
	}
	encodeJSON(w, report)
}

func writeJSONError(w io.Writer, dir string, err error) {
	encodeJSON(w, jsonReport{ModelDir: dir, Checks: []jsonCheck{}, Error: err.Error()})
}

func encodeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // every value is marshalable; a failed write to stdout has nowhere better to go
}
