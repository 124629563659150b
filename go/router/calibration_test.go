package router_test

import (
	"net/http"
	"testing"
)

// needs_review follows the model's calibration: pii has review_threshold 0.5, intent no calibration.
func TestClassifyAnswersNeedsReviewFromTheCalibration(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	for _, tc := range []struct {
		task, text string
		want       bool
	}{
		{"pii", "mail my email address", false}, // top 0.9
		{"pii", "hello there", true},            // uniform: top 0.25 < 0.5
		{"intent", "hello there", false},        // uniform, but no threshold
	} {
		status, body := h.do("POST", "/api/v1/classify", `{"text": "`+tc.text+`", "task": "`+tc.task+`"}`)
		if status != http.StatusOK || body["needs_review"] != tc.want {
			t.Errorf("%s %q: %d needs_review %v, want %v", tc.task, tc.text, status, body["needs_review"], tc.want)
		}
	}
	status, body := h.do("POST", "/api/v1/classify/batch",
		`{"texts": ["my phone number", "nothing", "a name"], "task_type": "pii"}`)
	if status != http.StatusOK {
		t.Fatalf("%d %v", status, body)
	}
	for i, want := range []bool{false, true, false} {
		if got := results(t, body)[i]["needs_review"]; got != want {
			t.Errorf("batch item %d: needs_review %v, want %v", i, got, want)
		}
	}
	// A confidence_threshold is the request's own choice and leaves the model's review verdict alone.
	_, body = h.do("POST", "/api/v1/classify", `{"text": "my phone", "task": "pii", "options": {"confidence_threshold": 0.95}}`)
	if body["below_threshold"] != true || body["needs_review"] != false {
		t.Errorf("confidence_threshold changed needs_review: %v", body)
	}
}

func TestModelsListTheCalibration(t *testing.T) {
	h := loaded(t, &fakeLoader{})
	_, body := h.do("GET", "/api/v1/models", "")
	seen := 0
	for _, raw := range body["models"].([]any) {
		m := raw.(map[string]any)
		switch m["id"] {
		case "pii":
			c, ok := m["calibration"].(map[string]any)
			if !ok || c["temperature"] != 1.5 || c["review_threshold"] != 0.5 {
				t.Errorf("pii calibration %v", m["calibration"])
			}
			seen++
		case "intent_bert":
			if _, ok := m["calibration"]; ok {
				t.Errorf("an uncalibrated model lists a calibration: %v", m)
			}
			seen++
		}
	}
	if seen != 2 {
		t.Fatalf("models %v", body["models"])
	}
}

func TestMismatchedReviewVerdictsAreAnInvalidOutput(t *testing.T) {
	h := loaded(t, &fakeLoader{behaviour: map[string]string{"pii": "short_review"}})
	status, body := h.do("POST", "/api/v1/classify/batch", `{"texts": ["a", "b"], "task_type": "pii"}`)
	if status != http.StatusInternalServerError || errorCode(t, body) != "invalid_model_output" {
		t.Fatalf("%d %v", status, body)
	}
}
