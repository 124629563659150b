package discovery_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/discovery/discoverytest"
)

func scan(t *testing.T, root string, opts discovery.Options) *discovery.Catalog {
	t.Helper()
	cat, err := discovery.Scan(root, opts)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return cat
}

func skipped(t *testing.T, cat *discovery.Catalog, id string) error {
	t.Helper()
	for _, s := range cat.Skipped {
		if s.ID == id {
			return s.Err
		}
	}
	t.Fatalf("%s was not skipped; models: %v", id, ids(cat.Models))
	return nil
}

func ids(models []*discovery.Model) []string {
	var out []string
	for _, m := range models {
		out = append(out, m.ID)
	}
	return out
}

func TestScanValidMergedModel(t *testing.T) {
	root := t.TempDir()
	// The directory name suggests intent/bert; the manifest says roberta and "jailbreak": the manifest wins.
	discoverytest.WriteModel(t, root, "lora_intent_bert_r8_model", discoverytest.Spec{
		Name: "jailbreak", Architecture: "roberta", Labels: []string{"benign", "jailbreak", "injection"}, Golden: true})
	cat := scan(t, root, discovery.Options{})
	if len(cat.Models) != 1 || len(cat.Skipped) != 0 {
		t.Fatalf("models %v skipped %v", ids(cat.Models), cat.Skipped)
	}
	m := cat.Models[0]
	if m.ID != "lora_intent_bert_r8_model" || m.Manifest.Name != "jailbreak" || m.ServingTask != "jailbreak" {
		t.Errorf("id %q name %q serving %q", m.ID, m.Manifest.Name, m.ServingTask)
	}
	if m.Manifest.Architecture != "roberta" || m.Mode != discovery.ModeMerged || !m.HasGolden() {
		t.Errorf("architecture %q mode %q golden %v", m.Manifest.Architecture, m.Mode, m.HasGolden())
	}
	if strings.Join(m.Manifest.Labels, ",") != "benign,jailbreak,injection" {
		t.Errorf("labels %v", m.Manifest.Labels)
	}
	if m.Dir != filepath.Join(root, "lora_intent_bert_r8_model") {
		t.Errorf("dir %q", m.Dir)
	}
}

func TestScanRejectsBadManifests(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(m map[string]any)
		want   error
	}{
		{"format_version", func(m map[string]any) { m["format_version"] = 2 }, discovery.ErrUnsupported},
		{"unknown_task", func(m map[string]any) { m["task"] = "regression" }, discovery.ErrManifest},
		{"empty_name", func(m map[string]any) { m["name"] = "" }, discovery.ErrManifest},
		{"name_with_slash", func(m map[string]any) { m["name"] = "a/b" }, discovery.ErrManifest},
		{"no_architecture", func(m map[string]any) { delete(m, "architecture") }, discovery.ErrManifest},
		{"no_labels", func(m map[string]any) { m["labels"] = []string{} }, discovery.ErrManifest},
		{"duplicate_label", func(m map[string]any) { m["labels"] = []string{"a", "a"} }, discovery.ErrManifest},
		{"max_seq_len", func(m map[string]any) { m["max_seq_len"] = 0 }, discovery.ErrManifest},
		{"bad_sha", func(m map[string]any) { m["files"].(map[string]any)["config.json"] = "XYZ" }, discovery.ErrManifest},
		{"path_escape", func(m map[string]any) { m["files"].(map[string]any)["../secret"] = strings.Repeat("a", 64) }, discovery.ErrManifest},
		{"absolute_path", func(m map[string]any) { m["files"].(map[string]any)["/etc/passwd"] = strings.Repeat("a", 64) }, discovery.ErrManifest},
		{"weights_unlisted", func(m map[string]any) { delete(m["files"].(map[string]any), "model.safetensors") }, discovery.ErrManifest},
		{"adapter_type", func(m map[string]any) { m["adapter"] = map[string]any{"type": "ia3", "r": 8} }, discovery.ErrUnsupported},
		{"reserved_name", func(m map[string]any) { m["name"] = "all" }, discovery.ErrManifest},
		{"generative_without_prompt", func(m map[string]any) { m["task"] = "generative_classification" }, discovery.ErrManifest},
		{"token_without_labels", func(m map[string]any) {
			m["task"], m["labels"] = "token_classification", []string{}
		}, discovery.ErrManifest},
		{"unknown_unsafe_label", func(m map[string]any) { m["unsafe_labels"] = []string{"negative", "nope"} }, discovery.ErrManifest},
		{"calibration_temperature_zero", calibration(map[string]any{"temperature": 0}), discovery.ErrManifest},
		{"calibration_temperature_huge", calibration(map[string]any{"temperature": 1e300}), discovery.ErrManifest},
		{"calibration_temperature_missing", calibration(map[string]any{"review_threshold": 0.5}), discovery.ErrManifest},
		{"calibration_temperature_text", calibration(map[string]any{"temperature": "1.5"}), discovery.ErrManifest},
		{"calibration_threshold_range", calibration(map[string]any{"temperature": 1.5, "review_threshold": 1.5}), discovery.ErrManifest},
		{"calibration_precision_range", calibration(map[string]any{"temperature": 1.5, "target_precision": 0}), discovery.ErrManifest},
		{"calibration_not_object", func(m map[string]any) { m["calibration"] = []float64{1.5} }, discovery.ErrManifest},
		{"calibration_on_token_task", func(m map[string]any) {
			m["task"], m["labels"], m["calibration"] = "token_classification", []string{"O", "B-PER"}, map[string]any{"temperature": 1.5}
		}, discovery.ErrManifest},
	}
	root := t.TempDir()
	for _, c := range cases {
		dir := discoverytest.WriteModel(t, root, c.name, discoverytest.Spec{})
		m := discoverytest.ReadManifest(t, dir)
		c.mutate(m)
		discoverytest.WriteManifest(t, dir, m)
	}
	if err := os.MkdirAll(filepath.Join(root, "not_json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "not_json", "lorakit.json"), []byte("{name:"), 0o644); err != nil {
		t.Fatal(err)
	}
	discoverytest.WriteModel(t, root, "good", discoverytest.Spec{})
	cat := scan(t, root, discovery.Options{})
	if got := ids(cat.Models); len(got) != 1 || got[0] != "good" {
		t.Fatalf("models %v, want only good", got)
	}
	for _, c := range cases {
		if err := skipped(t, cat, c.name); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	if err := skipped(t, cat, "not_json"); !errors.Is(err, discovery.ErrManifest) {
		t.Errorf("not_json: %v", err)
	}
}

func TestScanAcceptsEveryServedTask(t *testing.T) {
	root := t.TempDir()
	discoverytest.WriteModel(t, root, "guard", discoverytest.Spec{Labels: []string{"benign", "jailbreak"},
		UnsafeLabels: []string{"jailbreak"}})
	discoverytest.WriteModel(t, root, "pii", discoverytest.Spec{Task: "token_classification",
		Labels: []string{"O", "B-EMAIL", "I-EMAIL"}})
	discoverytest.WriteModel(t, root, "embed", discoverytest.Spec{Task: "embedding", Labels: []string{}})
	discoverytest.WriteModel(t, root, "topics", discoverytest.Spec{Task: "generative_classification",
		Architecture: "qwen3", Labels: []string{"sport", "music"}})
	cat := scan(t, root, discovery.Options{})
	if got := ids(cat.Models); strings.Join(got, ",") != "embed,guard,pii,topics" || len(cat.Skipped) != 0 {
		t.Fatalf("models %v, skipped %+v", got, cat.Skipped)
	}
	for _, m := range cat.Models {
		if m.ID == "guard" && strings.Join(m.Manifest.UnsafeLabels, ",") != "jailbreak" {
			t.Errorf("unsafe labels %v", m.Manifest.UnsafeLabels)
		}
		if m.ID == "topics" && (m.Manifest.Task != discovery.TaskGenerativeClassification || len(m.Manifest.Prompt) == 0) {
			t.Errorf("generative model: task %q prompt %s", m.Manifest.Task, m.Manifest.Prompt)
		}
	}
	only := scan(t, root, discovery.Options{Tasks: []string{"embedding"}})
	if got := ids(only.Models); strings.Join(got, ",") != "embed" || len(only.Skipped) != 3 {
		t.Errorf("Tasks [embedding]: models %v, skipped %+v", got, only.Skipped)
	}
}

func TestScanChecksums(t *testing.T) {
	root := t.TempDir()
	tampered := discoverytest.WriteModel(t, root, "tampered", discoverytest.Spec{})
	if err := os.WriteFile(filepath.Join(tampered, "model.safetensors"), []byte("other weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := discoverytest.WriteModel(t, root, "missing", discoverytest.Spec{Golden: true})
	if err := os.Remove(filepath.Join(missing, "golden.safetensors")); err != nil {
		t.Fatal(err)
	}
	notRegular := discoverytest.WriteModel(t, root, "not_regular", discoverytest.Spec{})
	if err := os.Remove(filepath.Join(notRegular, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(notRegular, "tokenizer.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	cat := scan(t, root, discovery.Options{})
	if len(cat.Models) != 0 {
		t.Fatalf("served %v", ids(cat.Models))
	}
	if err := skipped(t, cat, "tampered"); !errors.Is(err, discovery.ErrChecksum) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("tampered: %v", err)
	}
	if err := skipped(t, cat, "missing"); !errors.Is(err, discovery.ErrMissingFile) || !strings.Contains(err.Error(), "golden.safetensors") {
		t.Errorf("missing: %v", err)
	}
	if err := skipped(t, cat, "not_regular"); !errors.Is(err, discovery.ErrMissingFile) {
		t.Errorf("not_regular: %v", err)
	}
}

func TestScanIgnoresNonModelEntries(t *testing.T) {
	root := t.TempDir()
	discoverytest.WriteModel(t, root, "good", discoverytest.Spec{})
	discoverytest.WriteModel(t, root, ".hidden", discoverytest.Spec{})
	discoverytest.WriteModel(t, root, "intent.tmp-1234", discoverytest.Spec{})
	discoverytest.WriteBase(t, filepath.Join(root, "some_base"), "weights")
	if err := os.WriteFile(filepath.Join(root, "README.md"), []byte("models"), 0o644); err != nil {
		t.Fatal(err)
	}
	cat := scan(t, root, discovery.Options{})
	if got := ids(cat.Models); len(got) != 1 || got[0] != "good" {
		t.Fatalf("models %v", got)
	}
	if len(cat.Skipped) != 3 {
		t.Fatalf("skipped %v, want .hidden, intent.tmp-1234, some_base", cat.Skipped)
	}
	if err := skipped(t, cat, "some_base"); err == nil || !strings.Contains(err.Error(), "no lorakit.json") {
		t.Errorf("some_base: %v", err)
	}
}

// Only the architectures the loader serves are discovered; the others are skipped naming what is served.
func TestScanKeepsTheServedArchitectures(t *testing.T) {
	root := t.TempDir()
	discoverytest.WriteModel(t, root, "a_bert", discoverytest.Spec{Name: "a"})
	discoverytest.WriteModel(t, root, "b_xlm", discoverytest.Spec{Name: "b", Architecture: "xlm-roberta"})
	discoverytest.WriteModel(t, root, "c_qwen3", discoverytest.Spec{Name: "c", Architecture: "qwen3"})
	served := []discovery.Architecture{{ModelType: "bert"}, {ModelType: "roberta", Aliases: []string{"xlm-roberta"}}}
	cat := scan(t, root, discovery.Options{Architectures: served})
	if got := ids(cat.Models); strings.Join(got, ",") != "a_bert,b_xlm" {
		t.Fatalf("models %v", got)
	}
	err := skipped(t, cat, "c_qwen3")
	if !errors.Is(err, discovery.ErrUnsupported) || !strings.Contains(err.Error(), "bert, roberta, xlm-roberta") {
		t.Errorf("c_qwen3: %v", err)
	}
	// Without a list every architecture is discovered (the loader refuses what it cannot serve).
	if got := ids(scan(t, root, discovery.Options{}).Models); len(got) != 3 {
		t.Errorf("models without a list: %v", got)
	}
	for _, bad := range [][]discovery.Architecture{{{ModelType: ""}}, {{ModelType: "bert"}, {ModelType: "bert"}},
		{{ModelType: "roberta", Aliases: []string{"Roberta"}}}} {
		if _, err := discovery.Scan(root, discovery.Options{Architectures: bad}); err == nil {
			t.Errorf("architectures %+v: no error", bad)
		}
	}
}

func TestScanRootErrors(t *testing.T) {
	if _, err := discovery.Scan(filepath.Join(t.TempDir(), "absent"), discovery.Options{}); err == nil {
		t.Error("missing root: no error")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := discovery.Scan(file, discovery.Options{}); err == nil {
		t.Error("root is a file: no error")
	}
	bad := discovery.Options{Aliases: map[string]string{"x": "all"}}
	if _, err := discovery.Scan(t.TempDir(), bad); err == nil {
		t.Error("alias to all: no error")
	}
	if _, err := discovery.Scan(t.TempDir(), discovery.Options{Tasks: []string{"nope"}}); err == nil {
		t.Error("unknown task kind: no error")
	}
}

func TestFingerprintTracksManifests(t *testing.T) {
	root := t.TempDir()
	dir := discoverytest.WriteModel(t, root, "a", discoverytest.Spec{})
	fp := func() string {
		t.Helper()
		s, err := discovery.Fingerprint(root, 0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := fp()
	if fp() != first {
		t.Fatal("fingerprint not stable")
	}
	if err := os.WriteFile(filepath.Join(root, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fp() != first {
		t.Error("unrelated file changed the fingerprint")
	}
	m := discoverytest.ReadManifest(t, dir)
	m["labels"] = []string{"x", "y"}
	discoverytest.WriteManifest(t, dir, m)
	second := fp()
	if second == first {
		t.Error("edited manifest kept the fingerprint")
	}
	discoverytest.WriteModel(t, root, "b.tmp-1234", discoverytest.Spec{})
	if fp() != second {
		t.Error("an export in progress changed the fingerprint")
	}
	if err := os.Rename(filepath.Join(root, "b.tmp-1234"), filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	if fp() == second {
		t.Error("new model kept the fingerprint")
	}
	if _, err := discovery.Fingerprint(filepath.Join(root, "absent"), 0); err == nil {
		t.Error("missing root: no error")
	}
}

// calibration sets the manifest's calibration object.
func calibration(value map[string]any) func(m map[string]any) {
	return func(m map[string]any) { m["calibration"] = value }
}

func TestScanReadsTheCalibration(t *testing.T) {
	root := t.TempDir()
	dir := discoverytest.WriteModel(t, root, "calibrated", discoverytest.Spec{})
	m := discoverytest.ReadManifest(t, dir)
	m["calibration"] = map[string]any{"temperature": 1.7, "review_threshold": 0.45, "target_precision": 0.9,
		"fitted_on": "validation"}
	discoverytest.WriteManifest(t, dir, m)
	plain := discoverytest.WriteModel(t, root, "plain", discoverytest.Spec{})
	m = discoverytest.ReadManifest(t, plain)
	m["calibration"] = nil
	discoverytest.WriteManifest(t, plain, m)
	cat := scan(t, root, discovery.Options{})
	if got := ids(cat.Models); len(got) != 2 {
		t.Fatalf("models %v", got)
	}
	for _, model := range cat.Models {
		c := model.Manifest.Calibration
		switch model.ID {
		case "calibrated":
			if c == nil || *c.Temperature != 1.7 || *c.ReviewThreshold != 0.45 || *c.FittedOn != "validation" {
				t.Errorf("calibration %+v", c)
			}
		case "plain":
			if c != nil {
				t.Errorf("null calibration read as %+v", c)
			}
		}
	}
}
