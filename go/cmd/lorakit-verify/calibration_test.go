package main

import (
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

const calibratedFixture = "tiny_bert_calibrated"

func TestPassesOnTheCalibratedFixture(t *testing.T) {
	code, out, errOut := runVerify(t, lorakittest.FixtureDir(t, calibratedFixture))
	if code != exitPass {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, mode := range []string{"merged", "runtime"} {
		for _, output := range []string{"logits", "probabilities", "needs_review"} {
			if got := result(t, out, mode, output); got != "ok" {
				t.Errorf("%s %s: %s\n%s", mode, output, got, out)
			}
		}
	}
	if !strings.Contains(out, "calibrated probabilities (review threshold 0.45)") {
		t.Errorf("the header does not describe the calibration:\n%s", out)
	}
}

// A temperature changed in lorakit.json (which no checksum covers) fails the probabilities in both modes,
// while the raw logits still pass; a changed threshold fails the review verdicts.
func TestFailsOnATamperedCalibration(t *testing.T) {
	for _, tc := range []struct {
		key    string
		value  any
		failed string
	}{
		{"temperature", 1.0, "probabilities"},
		{"review_threshold", 0.6, "needs_review"},
	} {
		dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, calibratedFixture))
		lorakittest.EditManifest(t, dir, func(m map[string]any) {
			m["calibration"].(map[string]any)[tc.key] = tc.value
		})
		code, out, _ := runVerify(t, dir)
		if code != exitMismatch {
			t.Fatalf("%s=%v: exit %d, want %d\n%s", tc.key, tc.value, code, exitMismatch, out)
		}
		for _, mode := range []string{"merged", "runtime"} {
			if result(t, out, mode, tc.failed) != "FAIL" || result(t, out, mode, "logits") != "ok" {
				t.Errorf("%s=%v %s:\n%s", tc.key, tc.value, mode, out)
			}
		}
	}
}
