package lorakit

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// generativeFixtures are the causal LM classifiers the fixtures script trains (docs/generative.md).
var generativeFixtures = []string{"tiny_gemma3_generative", "tiny_qwen3_generative"}

// hasAdapter reports whether the model directory's manifest declares an adapter (runtime mode is possible).
func hasAdapter(t *testing.T, dir string) bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "lorakit.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		Adapter any `json:"adapter"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	return manifest.Adapter != nil
}

func checkByName(t *testing.T, report *ParityReport, output string) Check {
	t.Helper()
	for _, c := range report.Checks {
		if c.Output == output {
			return c
		}
	}
	t.Fatalf("no %s check in %+v", output, report.Checks)
	return Check{}
}

func TestGenerativeFixturesReproduceTheirGolden(t *testing.T) {
	for _, name := range generativeFixtures {
		dir := lorakittest.FixtureDir(t, name)
		g := loadGolden(t, dir)
		if g.Output != OutputNextTokenLogits || g.VocabSize == 0 || len(g.FewShot) == 0 {
			t.Fatalf("%s: golden output %q vocab %d few-shot cases %d", name, g.Output, g.VocabSize, len(g.FewShot))
		}
		modes := []bool{true}
		if hasAdapter(t, dir) {
			modes = append(modes, false)
		}
		for _, merged := range modes {
			m := loadModel(t, dir, merged, Options{})
			info := taskInfo(t, m, "")
			if info.Task != TaskGenerativeClassification || info.Labels == nil {
				t.Fatalf("%s: task info %+v", name, info)
			}
			report, err := g.CheckModel(m)
			if err != nil {
				t.Fatalf("%s merged=%v: %v", name, merged, err)
			}
			if !report.OK {
				t.Errorf("%s merged=%v: parity failed: %+v", name, merged, report.Checks)
			}
			var outputs []string
			for _, c := range report.Checks {
				outputs = append(outputs, c.Output)
			}
			want := []string{"input_ids", "attention_mask", "next_token_logits", "label_probs", "argmax", "fewshot"}
			if !slices.Equal(outputs, want) {
				t.Errorf("%s: checks %v, want %v", name, outputs, want)
			}
			t.Logf("%s merged=%v: next-token logits max |diff| %.3g (tol %g), label probs %.3g, few-shot %.3g (tol %g)",
				name, merged, checkByName(t, report, "next_token_logits").MaxAbsDiff, g.Tolerance,
				checkByName(t, report, "label_probs").MaxAbsDiff, checkByName(t, report, "fewshot").MaxAbsDiff, g.ProbTolerance)

			// Classify answers the manifest labels with a softmax over the label scores.
			res, err := m.Classify(g.Texts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Labels, info.Labels) || res.NumLabels != g.NumLabels {
				t.Errorf("%s: labels %v, task labels %v", name, res.Labels, info.Labels)
			}
		}
	}
}

func TestGenerativePromptsAreLeftPadded(t *testing.T) {
	for _, name := range generativeFixtures {
		dir := lorakittest.FixtureDir(t, name)
		g := loadGolden(t, dir)
		m := loadModel(t, dir, true, Options{})
		enc, err := m.Tokenize(g.Texts)
		if err != nil {
			t.Fatal(err)
		}
		padded := false
		for row := range enc.NumTexts {
			mask := enc.AttentionMask[row*enc.SeqLen : (row+1)*enc.SeqLen]
			first := slices.Index(mask, 1)
			if first < 0 || slices.Contains(mask[first:], 0) {
				t.Errorf("%s row %d: mask %v is not left padded", name, row, mask)
			}
			padded = padded || first > 0
		}
		if !padded {
			t.Errorf("%s: the golden texts have equal prompt lengths, so left padding is not exercised", name)
		}
	}
}

func TestFewShotLabelsAndErrors(t *testing.T) {
	dir := lorakittest.FixtureDir(t, generativeFixtures[1])
	m := loadModel(t, dir, true, Options{})
	info := taskInfo(t, m, "")
	examples := []Example{{Document: "the match ended two nil", Label: info.Labels[0]},
		{Document: "a brand new label appears", Label: "brand_new"}}
	res, err := m.ClassifyFewShot("what happened", examples, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(info.Labels), "brand_new"); !slices.Equal(res.Labels, want) || res.NumTexts != 1 {
		t.Errorf("default few-shot labels %v, want %v", res.Labels, want)
	}
	probs := res.Probabilities()
	total := float32(0)
	for j, p := range probs {
		total += p
		// Probabilities are the softmax of the label scores (log-probabilities, so never positive).
		if res.Logits[j] > 0 {
			t.Errorf("label %q scores %g: a log-probability is at most 0", res.Labels[j], res.Logits[j])
		}
	}
	if math.Abs(float64(total)-1) > 1e-5 {
		t.Errorf("probabilities %v sum to %g", probs, total)
	}
	chosen, err := m.ClassifyFewShotWith("", "what happened", nil, []string{"x", "y"})
	if err != nil || !slices.Equal(chosen.Labels, []string{"x", "y"}) {
		t.Errorf("request labels: %+v, %v", chosen, err)
	}
	// A prompt longer than max_seq_len is an input error that says how long it was.
	long := make([]Example, 40)
	for i := range long {
		long[i] = Example{Document: strings.Repeat("many words in this document ", 20), Label: info.Labels[0]}
	}
	if _, err := m.ClassifyFewShot("x", long, nil); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "fewer") {
		t.Errorf("a too long prompt: want ErrInput asking for fewer examples, got %v", err)
	}
	// Generative calls on a sequence classifier, and NUL bytes in an adapter name, are input errors.
	seq := loadModel(t, lorakittest.FixtureDir(t, "tiny_bert_full"), true, Options{})
	if _, err := seq.ClassifyFewShot("x", examples, nil); !errors.Is(err, ErrInput) {
		t.Errorf("few-shot on a sequence classifier: want ErrInput, got %v", err)
	}
	if _, err := seq.NextTokenLogits([]string{"x"}); !errors.Is(err, ErrInput) {
		t.Errorf("next-token logits of a sequence classifier: want ErrInput, got %v", err)
	}
	if _, err := m.ClassifyFewShotWith("a\x00b", "x", nil, nil); !errors.Is(err, ErrInput) {
		t.Errorf("NUL in the adapter name: want ErrInput, got %v", err)
	}
	logits, err := m.NextTokenLogits([]string{"one", "two words"})
	if err != nil || logits.NumTexts != 2 || logits.Dim == 0 || len(logits.Values) != 2*logits.Dim {
		t.Errorf("next-token logits %+v, %v", logits, err)
	}
}

// Each part of a generative golden file is checked: a change to the next-token logits, a label distribution,
// a few-shot case or the weights fails the report in that check.
func TestTamperedGenerativeGoldenFails(t *testing.T) {
	src := lorakittest.FixtureDir(t, generativeFixtures[0])
	g := loadGolden(t, src)
	cases := map[string]struct {
		tamper func(dir string)
		failed string
	}{
		"next_token_logits": {func(dir string) {
			lorakittest.AddToFloat(t, dir, GoldenFile, "logits", g.VocabSize+3, float32(10*g.Tolerance))
		}, "next_token_logits"},
		"label_probs": {func(dir string) {
			lorakittest.AddToFloat(t, dir, GoldenFile, "label_probs", 1, float32(10*g.ProbTolerance))
		}, "label_probs"},
		"fewshot": {func(dir string) {
			lorakittest.EditMetadata(t, dir, GoldenFile, func(meta map[string]string) {
				var cases []FewShotGolden
				if err := json.Unmarshal([]byte(meta["fewshot"]), &cases); err != nil {
					t.Fatal(err)
				}
				cases[len(cases)-1].Probabilities[0] += float32(10 * g.ProbTolerance)
				raw, _ := json.Marshal(cases)
				meta["fewshot"] = string(raw)
			})
		}, "fewshot"},
		"input_ids": {func(dir string) {
			lorakittest.EditMetadata(t, dir, GoldenFile, func(meta map[string]string) {
				// A word in front: documents are cut to max_document_tokens, so an appended one could vanish.
				texts := append(slices.Clone(g.Texts[:len(g.Texts)-1]), "moreover "+g.Texts[len(g.Texts)-1])
				raw, _ := json.Marshal(texts)
				meta["texts"] = string(raw)
			})
		}, "input_ids"},
		"weights": {func(dir string) {
			lorakittest.AddToFloat(t, dir, "model.safetensors", "model.norm.weight", 0, 0.5)
			lorakittest.RewriteChecksums(t, dir)
		}, "next_token_logits"},
	}
	for name, c := range cases {
		dir := lorakittest.CopyModelDir(t, src)
		c.tamper(dir)
		tampered := loadGolden(t, dir)
		report, err := tampered.CheckModel(loadModel(t, dir, true, Options{}))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if report.OK || checkByName(t, report, c.failed).OK {
			t.Errorf("%s: a tampered %s passed: %+v", name, c.failed, report.Checks)
		}
	}
}

// The few-shot comparison fails on other labels, a probability outside the tolerance and another choice
// within it.
func TestCompareFewShotCatchesEveryDifference(t *testing.T) {
	g := &Golden{Output: OutputNextTokenLogits, ProbTolerance: 1e-3, FewShot: []FewShotGolden{
		{Text: "t", Labels: []string{"a", "b"}, Probabilities: []float32{0.6, 0.4}},
		{Text: "u", Labels: []string{"a", "b"}, Probabilities: []float32{0.5004, 0.4996}},
	}}
	result := func(labels []string, probs ...float32) *Result {
		return &Result{Labels: labels, NumTexts: 1, NumLabels: len(labels), probabilities: probs}
	}
	ab := []string{"a", "b"}
	good := []*Result{result(ab, 0.6, 0.4), result(ab, 0.5003, 0.4997)}
	if c := g.CompareFewShot(good); !c.OK || c.Mismatches != 0 {
		t.Fatalf("matching cases failed: %+v", c)
	}
	for name, results := range map[string][]*Result{
		"labels":      {result([]string{"a", "c"}, 0.6, 0.4), good[1]},
		"probability": {result(ab, 0.602, 0.398), good[1]},
		"choice":      {good[0], result(ab, 0.4997, 0.5003)},
		"count":       {good[0]},
	} {
		if c := g.CompareFewShot(results); c.OK || c.Detail == "" {
			t.Errorf("%s: passed: %+v", name, c)
		}
	}
}

// A generative golden file without its few-shot cases, or with a case whose probabilities do not match its
// labels, is a format error (as in the core), not a check that silently covers less.
func TestGenerativeGoldenNeedsItsFewShotCases(t *testing.T) {
	for name, edit := range map[string]func(meta map[string]string){
		"missing":    func(meta map[string]string) { delete(meta, "fewshot") },
		"not a list": func(meta map[string]string) { meta["fewshot"] = `{"text": "x"}` },
		"short": func(meta map[string]string) {
			meta["fewshot"] = `[{"text": "x", "labels": ["a", "b"], "probabilities": [1]}]`
		},
	} {
		dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, generativeFixtures[1]))
		lorakittest.EditMetadata(t, dir, GoldenFile, edit)
		if _, err := ReadGolden(filepath.Join(dir, GoldenFile)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: want ErrFormat, got %v", name, err)
		}
	}
}
