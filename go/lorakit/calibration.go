package lorakit

/*
#include "lorakit.h"
*/
import "C"

import "math"

// Calibration is a sequence classifier's lorakit.json "calibration" as the native core applies it
// (docs/FORMAT.md "Calibration"): probabilities are softmax(logits / Temperature), and a text needs review when
// its top probability is below ReviewThreshold. Without a calibration Temperature is 1 and HasReviewThreshold
// false (nothing needs review); other tasks never carry one.
type Calibration struct {
	Temperature        float32
	ReviewThreshold    float32 // in [0, 1]; meaningful only when HasReviewThreshold
	HasReviewThreshold bool
}

// Calibrated is true when the model's probabilities or review verdicts differ from plain softmax. The zero
// value (a Result not made by Classify) counts as uncalibrated.
func (c Calibration) Calibrated() bool {
	return c.HasReviewThreshold || (c.Temperature != 0 && c.Temperature != 1)
}

// NeedsReview is the verdict of a text whose top calibrated probability is top (a NaN top needs review).
func (c Calibration) NeedsReview(top float32) bool {
	return c.HasReviewThreshold && !(top >= c.ReviewThreshold)
}

// calibrationOf reads the C convention: a NaN threshold means none.
func calibrationOf(temperature, threshold C.float) Calibration {
	c := Calibration{Temperature: float32(temperature)}
	if t := float32(threshold); !math.IsNaN(float64(t)) {
		c.ReviewThreshold, c.HasReviewThreshold = t, true
	}
	return c
}
