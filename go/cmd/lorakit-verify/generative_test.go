package main

import (
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

var generativeFixtures = []string{"tiny_gemma3_generative", "tiny_qwen3_generative"}

// Generative fixtures pass every check in both modes: left-padded prompt ids, next-token logits, label
// distributions with their argmax, and the few-shot cases.
func TestPassesOnGenerativeFixtures(t *testing.T) {
	for _, name := range generativeFixtures {
		code, out, errOut := runVerify(t, lorakittest.FixtureDir(t, name))
		if code != exitPass || !strings.Contains(out, "generative classification") {
			t.Fatalf("%s: exit %d\n%s%s", name, code, out, errOut)
		}
		for _, mode := range []string{"merged", "runtime"} {
			for _, output := range []string{"input_ids", "attention_mask", "next_token_logits", "label_probs", "argmax", "fewshot"} {
				if result(t, out, mode, output) != "ok" {
					t.Errorf("%s %s %s:\n%s", name, mode, output, out)
				}
			}
		}
	}
}

// A shifted final norm weight changes the next-token logits of the merged weights only.
func TestFailsOnTamperedGenerativeWeights(t *testing.T) {
	dir := tamper(t, generativeFixtures[1], "model.safetensors", "model.norm.weight", 0.5)
	code, out, _ := runVerify(t, dir)
	if code != exitMismatch || result(t, out, "merged", "next_token_logits") != "FAIL" ||
		result(t, out, "runtime", "next_token_logits") != "ok" {
		t.Fatalf("exit %d\n%s", code, out)
	}
}
