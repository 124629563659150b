// Package discoverytest writes small fake lorakit model directories for tests: valid manifests with real
// sha256 tables over placeholder files, so discovery and router tests need no real weights.
package discoverytest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Spec describes a fake model directory. Zero values get sensible defaults.
type Spec struct {
	Name         string
	Architecture string   // default "bert"
	Task         string   // default "sequence_classification"
	Labels       []string // default ["negative", "positive"]; an empty non-nil list stays empty (embeddings)
	UnsafeLabels []string // written as unsafe_labels when set
	// Calibration is written as the manifest's calibration object when set.
	Calibration map[string]any
	// Adapter makes an adapter model on BasePath (absolute, or relative to the model dir) with BaseSHA.
	Adapter  bool
	BasePath string
	BaseSHA  string
	// AlsoMerged lists model.safetensors next to the adapter files.
	AlsoMerged bool
	Golden     bool
}

// WriteBase writes a fake HF base directory and returns the sha256 of its weights.
func WriteBase(t testing.TB, dir string, weights string) string {
	t.Helper()
	mustWrite(t, filepath.Join(dir, "config.json"), `{"model_type": "bert"}`)
	mustWrite(t, filepath.Join(dir, "tokenizer.json"), `{}`)
	mustWrite(t, filepath.Join(dir, "model.safetensors"), weights)
	return sum([]byte(weights))
}

// WriteModel writes root/id as a lorakit model directory for spec and returns its path.
func WriteModel(t testing.TB, root, id string, spec Spec) string {
	t.Helper()
	dir := filepath.Join(root, id)
	files := map[string]string{
		"config.json":    `{"model_type": "` + def(spec.Architecture, "bert") + `"}`,
		"tokenizer.json": `{"version": "1.0"}`,
	}
	if !spec.Adapter || spec.AlsoMerged {
		files["model.safetensors"] = "merged weights of " + id
	}
	if spec.Adapter {
		files["adapter_config.json"] = `{"r": 8}`
		files["adapter_model.safetensors"] = "adapter weights of " + id
	}
	if spec.Golden {
		files["golden.safetensors"] = "golden vectors of " + id
	}
	table := map[string]string{}
	for rel, content := range files {
		mustWrite(t, filepath.Join(dir, rel), content)
		table[rel] = sum([]byte(content))
	}
	labels := spec.Labels
	if labels == nil {
		labels = []string{"negative", "positive"}
	}
	manifest := map[string]any{
		"format_version": 1,
		"name":           def(spec.Name, id),
		"task":           def(spec.Task, "sequence_classification"),
		"architecture":   def(spec.Architecture, "bert"),
		"base":           map[string]any{"path": spec.BasePath, "id": "test/base", "weights_sha256": spec.BaseSHA},
		"adapter":        nil,
		"labels":         labels,
		"max_seq_len":    128,
		"files":          table,
	}
	if manifest["task"] == "generative_classification" {
		manifest["prompt"] = map[string]any{"instruction": "Classify the document.", "labels_prefix": "\nCategories: ",
			"label_separator": ", ", "document_prefix": "\nDocument: ", "answer_prefix": "\nAnswer: ",
			"answer_suffix": "", "max_document_tokens": 64, "truncation": "head", "add_bos": true}
	}
	if spec.UnsafeLabels != nil {
		manifest["unsafe_labels"] = spec.UnsafeLabels
	}
	if spec.Calibration != nil {
		manifest["calibration"] = spec.Calibration
	}
	if spec.Adapter {
		manifest["adapter"] = map[string]any{"type": "lora", "r": 8, "lora_alpha": 16, "use_rslora": false,
			"target_modules": []string{"query", "value"}, "modules_to_save": []string{"classifier"}}
	}
	WriteManifest(t, dir, manifest)
	return dir
}

// WriteManifest writes any JSON value as dir/lorakit.json.
func WriteManifest(t testing.TB, dir string, manifest any) {
	t.Helper()
	data, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "lorakit.json"), string(data))
}

// ReadManifest returns dir/lorakit.json as a generic map, for tests that corrupt one field.
func ReadManifest(t testing.TB, dir string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "lorakit.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func mustWrite(t testing.TB, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func def(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
