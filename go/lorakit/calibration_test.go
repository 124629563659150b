package lorakit

import (
	"math"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// tiny_bert_calibrated: tiny_bert_lora_a with calibration temperature 1.7 and review_threshold 0.45.
const calibratedFixture = "tiny_bert_calibrated"

var fixtureCalibration = Calibration{Temperature: 1.7, ReviewThreshold: 0.45, HasReviewThreshold: true}

func checkNamed(t *testing.T, report *ParityReport, output string) Check {
	t.Helper()
	for _, c := range report.Checks {
		if c.Output == output {
			return c
		}
	}
	t.Fatalf("no %q check in %+v", output, report.Checks)
	return Check{}
}

func TestCalibratedModelMatchesGoldenProbabilitiesAndReviews(t *testing.T) {
	dir := lorakittest.FixtureDir(t, calibratedFixture)
	g := loadGolden(t, dir)
	if g.Probabilities == nil || !g.HasReviewThreshold || g.ReviewThreshold != 0.45 {
		t.Fatalf("golden has no calibration: threshold %v/%v", g.ReviewThreshold, g.HasReviewThreshold)
	}
	for _, merged := range []bool{true, false} {
		m := loadModel(t, dir, merged, Options{})
		report, err := g.CheckModel(m)
		if err != nil {
			t.Fatal(err)
		}
		if !report.OK {
			t.Fatalf("merged=%v: %+v", merged, report.Checks)
		}
		for _, name := range []string{"probabilities", "needs_review"} {
			if c := checkNamed(t, report, name); !c.OK || c.Mismatches != 0 {
				t.Fatalf("merged=%v %s: %+v", merged, name, c)
			}
		}
		info, err := m.TaskInfo("")
		if err != nil || info.Calibration != fixtureCalibration {
			t.Fatalf("TaskInfo calibration %+v, %v", info.Calibration, err)
		}
		res, err := m.Classify(g.Texts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Calibration != fixtureCalibration || len(res.NeedsReview) != g.NumTexts {
			t.Fatalf("result calibration %+v, %d verdicts", res.Calibration, len(res.NeedsReview))
		}
		probs, reviews := res.Probabilities(), 0
		for i := range res.NumTexts {
			row := res.Logits[i*res.NumLabels : (i+1)*res.NumLabels]
			top := float32(0)
			sum := 0.0
			for _, v := range row {
				sum += math.Exp(float64(v) / 1.7)
			}
			for j, v := range row {
				want := math.Exp(float64(v)/1.7) / sum
				if got := probs[i*res.NumLabels+j]; math.Abs(float64(got)-want) > 1e-6 {
					t.Fatalf("text %d label %d: probability %v, softmax(logits/1.7) %v", i, j, got, want)
				}
				top = max(top, probs[i*res.NumLabels+j])
			}
			if res.NeedsReview[i] != (top < 0.45) {
				t.Fatalf("text %d: top %v, needs_review %v", i, top, res.NeedsReview[i])
			}
			if res.NeedsReview[i] {
				reviews++
			}
		}
		if reviews == 0 || reviews == res.NumTexts {
			t.Fatalf("%d of %d texts need review: the fixture should have both verdicts", reviews, res.NumTexts)
		}
	}
}

func TestTamperedCalibrationFailsTheGoldenCheck(t *testing.T) {
	src := lorakittest.FixtureDir(t, calibratedFixture)
	cases := []struct {
		name   string
		edit   func(calibration map[string]any)
		failed string
	}{
		{"temperature 1.7 -> 1.0", func(c map[string]any) { c["temperature"] = 1.0 }, "probabilities"},
		{"temperature 1.7 -> 2.5", func(c map[string]any) { c["temperature"] = 2.5 }, "probabilities"},
		{"threshold 0.45 -> 0.6", func(c map[string]any) { c["review_threshold"] = 0.6 }, "needs_review"},
		{"threshold removed", func(c map[string]any) { delete(c, "review_threshold") }, "needs_review"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := lorakittest.CopyModelDir(t, src)
			lorakittest.EditManifest(t, dir, func(m map[string]any) { tc.edit(m["calibration"].(map[string]any)) })
			report, err := loadGolden(t, dir).CheckModel(loadModel(t, dir, true, Options{}))
			if err != nil {
				t.Fatal(err)
			}
			if report.OK || checkNamed(t, report, tc.failed).OK {
				t.Fatalf("%s must fail %s: %+v", tc.name, tc.failed, report.Checks)
			}
			if c := checkNamed(t, report, "logits"); !c.OK {
				t.Fatalf("the logits are untouched: %+v", c)
			}
		})
	}
}

func TestCalibrationWithoutGoldenProbabilitiesFails(t *testing.T) {
	dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, "tiny_bert_lora_a"))
	lorakittest.EditManifest(t, dir, func(m map[string]any) {
		m["calibration"] = map[string]any{"temperature": 1.7}
	})
	report, err := loadGolden(t, dir).CheckModel(loadModel(t, dir, true, Options{}))
	if err != nil {
		t.Fatal(err)
	}
	c := checkNamed(t, report, "probabilities")
	if report.OK || c.OK || !strings.Contains(c.Detail, "no probabilities") {
		t.Fatalf("%+v", c)
	}
}

func TestUncalibratedModelsHaveTemperatureOneAndNoReviews(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	m := loadModel(t, dir, true, Options{})
	res, err := m.Classify([]string{"my card was declined", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := Calibration{Temperature: 1}
	if res.Calibration != want || res.Calibration.Calibrated() || len(res.NeedsReview) != 2 ||
		res.NeedsReview[0] || res.NeedsReview[1] {
		t.Fatalf("calibration %+v, needs_review %v", res.Calibration, res.NeedsReview)
	}
	report, err := loadGolden(t, dir).CheckModel(m)
	if err != nil || !report.OK {
		t.Fatalf("%v %+v", err, report)
	}
	for _, c := range report.Checks {
		if c.Output == "probabilities" || c.Output == "needs_review" {
			t.Fatalf("an uncalibrated golden file has no %s check", c.Output)
		}
	}
}

func TestEachAdapterOnASharedBaseKeepsItsCalibration(t *testing.T) {
	base, err := LoadBase(lorakittest.FixtureDir(t, "tiny_bert_base"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	calibrated := lorakittest.FixtureDir(t, calibratedFixture)
	if err := base.AddAdapter("plain", lorakittest.FixtureDir(t, "tiny_bert_lora_a")); err != nil {
		t.Fatal(err)
	}
	if err := base.AddAdapter("calibrated", calibrated); err != nil {
		t.Fatal(err)
	}
	report, err := loadGolden(t, calibrated).CheckAdapter(base, "calibrated")
	if err != nil || !report.OK {
		t.Fatalf("%v %+v", err, report)
	}
	plain, err := base.ClassifyWith("plain", []string{"close my account"})
	if err != nil {
		t.Fatal(err)
	}
	tempered, err := base.ClassifyWith("calibrated", []string{"close my account"})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Calibration.Calibrated() || tempered.Calibration != fixtureCalibration ||
		plain.Logits[0] != tempered.Logits[0] || plain.Probabilities()[0] == tempered.Probabilities()[0] {
		t.Fatalf("plain %+v %v, calibrated %+v %v", plain.Calibration, plain.Probabilities(),
			tempered.Calibration, tempered.Probabilities())
	}
}

func TestCalibrationVerdicts(t *testing.T) {
	c := Calibration{Temperature: 1, ReviewThreshold: 0.7, HasReviewThreshold: true}
	if !c.NeedsReview(0.69) || c.NeedsReview(0.7) || !c.NeedsReview(float32(math.NaN())) {
		t.Fatal("below the threshold needs review; at it does not; NaN does")
	}
	if (Calibration{Temperature: 1}).NeedsReview(0) || (Calibration{}).Calibrated() {
		t.Fatal("no threshold: nothing needs review; the zero value is uncalibrated")
	}
}
