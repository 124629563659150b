package lorakit

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// nonFiniteCopy copies fixture name and adds value to element 0 of tensor in model.safetensors.
func nonFiniteCopy(t *testing.T, name, tensor string, value float32) string {
	t.Helper()
	dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, name))
	lorakittest.AddToFloat(t, dir, "model.safetensors", tensor, 0, value)
	lorakittest.RewriteChecksums(t, dir)
	return dir
}

func wantCompute(t *testing.T, err error, needle string) {
	t.Helper()
	if !errors.Is(err, ErrCompute) {
		t.Fatalf("want ErrCompute, got %v", err)
	}
	if !strings.Contains(err.Error(), needle) || !strings.Contains(err.Error(), "allow_non_finite") {
		t.Fatalf("message %q lacks %q", err, needle)
	}
}

func TestNaNLogitsAreErrComputeUnlessAllowed(t *testing.T) {
	dir := nonFiniteCopy(t, "tiny_bert_full", "classifier.weight", float32(math.NaN()))
	texts := []string{"fine", "also fine"}
	_, err := loadModel(t, dir, true, Options{Threads: 1}).Classify(texts)
	wantCompute(t, err, "classify: text 0: logit of label 0")

	res, err := loadModel(t, dir, true, Options{Threads: 1, AllowNonFinite: true}).Classify(texts)
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(float64(res.Logits[0])) || math.IsNaN(float64(res.Logits[1])) {
		t.Fatalf("want the raw logits with label 0 NaN, got %v", res.Logits)
	}
}

func TestInfTokenLogitsAndNaNEmbeddingsAreErrCompute(t *testing.T) {
	texts := []string{"Ana lives in Oslo"}
	tokens := nonFiniteCopy(t, "tiny_bert_token_lora", "classifier.bias", float32(math.Inf(1)))
	_, err := loadModel(t, tokens, true, Options{Threads: 1}).ExtractEntities(texts)
	wantCompute(t, err, "extract_entities: text 0: logit of token 0 for label 0")
	ents, err := loadModel(t, tokens, true, Options{Threads: 1, AllowNonFinite: true}).ExtractEntities(texts)
	if err != nil || !math.IsInf(float64(ents.TokenLogits[0][0]), 1) {
		t.Fatalf("want raw +Inf token logits, got %v, %v", ents, err)
	}

	embed := nonFiniteCopy(t, "tiny_bert_embed_lora", "encoder.layer.1.output.dense.bias", float32(math.NaN()))
	_, err = loadModel(t, embed, true, Options{Threads: 1}).Embed(texts)
	wantCompute(t, err, "embed: text 0: embedding value 0 is NaN")
	vecs, err := loadModel(t, embed, true, Options{Threads: 1, AllowNonFinite: true}).Embed(texts)
	if err != nil || !math.IsNaN(float64(vecs.Row(0)[0])) {
		t.Fatalf("want raw NaN embeddings, got %v", err)
	}
}

// Golden checks fail on NaN/Inf outputs whether the model refuses them (a failed check naming the text) or hands
// them out (the worst element is the non-finite one).
func TestGoldenCheckReportsNonFiniteOutputsAsMismatch(t *testing.T) {
	cases := []struct{ fixture, tensor, output string }{
		{"tiny_bert_full", "classifier.weight", "logits"},
		{"tiny_bert_token_lora", "classifier.bias", "token_logits"},
		{"tiny_bert_embed_lora", "encoder.layer.1.output.dense.bias", "embeddings"},
	}
	for _, c := range cases {
		for _, value := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			dir := nonFiniteCopy(t, c.fixture, c.tensor, value)
			golden := loadGolden(t, dir)
			for _, allow := range []bool{false, true} {
				report, err := golden.CheckModel(loadModel(t, dir, true, Options{Threads: 1, AllowNonFinite: allow}))
				if err != nil {
					t.Fatalf("%s %v allow=%v: %v", c.fixture, value, allow, err)
				}
				if report.OK {
					t.Fatalf("%s %v allow=%v: a non-finite output passed: %+v", c.fixture, value, allow, report)
				}
				worst := 0.0
				for _, check := range report.Checks {
					if check.Output == c.output || check.Output == "argmax" {
						worst = math.Max(worst, check.MaxAbsDiff)
					}
				}
				if !math.IsInf(worst, 1) {
					t.Fatalf("%s %v allow=%v: want an infinite difference, got %+v", c.fixture, value, allow, report)
				}
			}
		}
	}
}
