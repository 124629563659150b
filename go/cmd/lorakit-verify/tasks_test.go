package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/internal/safetensors"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// outputsOf are the rows of each task's report besides input_ids, attention_mask and tokens_used.
var outputsOf = map[string][]string{
	lorakit.TaskTokenClassification: {"token_logits", "argmax", "entities"},
	lorakit.TaskEmbedding:           {"embeddings"},
}

func TestPassesOnEveryTaskFixture(t *testing.T) {
	for _, f := range lorakittest.TaskFixtures(t) {
		code, out, errOut := runVerify(t, lorakittest.FixtureDir(t, f.Name))
		if code != exitPass || !strings.Contains(out, "PASS") {
			t.Fatalf("%s: exit %d\n%s%s", f.Name, code, out, errOut)
		}
		for _, mode := range []string{"merged", "runtime"} {
			for _, output := range append([]string{"input_ids", "tokens_used"}, outputsOf[f.Task]...) {
				if result(t, out, mode, output) != "ok" {
					t.Errorf("%s: %s %s is not ok:\n%s", f.Name, mode, output, out)
				}
			}
		}
	}
}

// firstLoraB names the first LoRA B tensor of an adapter file (sorted), the weight tampering perturbs.
func firstLoraB(t *testing.T, dir string) string {
	t.Helper()
	file, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range file.Names() {
		if strings.Contains(name, "lora_B") {
			return name
		}
	}
	t.Fatalf("%s holds no lora_B tensor", dir)
	return ""
}

func TestFailsOnATamperedTaskAdapter(t *testing.T) {
	for _, f := range lorakittest.TaskFixtures(t) {
		dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, f.Name))
		lorakittest.AddToFloat(t, dir, "adapter_model.safetensors", firstLoraB(t, dir), 0, 0.5)
		lorakittest.RewriteChecksums(t, dir)
		code, out, _ := runVerify(t, dir)
		values := outputsOf[f.Task][0]
		if code != exitMismatch || result(t, out, "runtime", values) != "FAIL" || result(t, out, "merged", values) != "ok" {
			t.Errorf("%s: exit %d, want a runtime %s failure only\n%s", f.Name, code, values, out)
		}
	}
}
