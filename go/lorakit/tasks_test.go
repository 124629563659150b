package lorakit

import (
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

func loadBase(t testing.TB) *Model {
	t.Helper()
	b, err := LoadBase(lorakittest.FixtureDir(t, "tiny_bert_base"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func taskInfo(t *testing.T, m *Model, adapter string) *TaskInfo {
	t.Helper()
	info, err := m.TaskInfo(adapter)
	if err != nil {
		t.Fatalf("TaskInfo(%q): %v", adapter, err)
	}
	return info
}

func TestBaseServesSeveralAdaptersAtGoldenParity(t *testing.T) {
	b := loadBase(t)
	if b.Name() != "tiny_bert_base" || b.Architecture() != "bert" || len(b.WeightsSHA256()) != 64 {
		t.Errorf("name %q architecture %q sha256 %q", b.Name(), b.Architecture(), b.WeightsSHA256())
	}
	adapters := map[string]string{"a": "tiny_bert_lora_a", "b": "tiny_bert_lora_b"}
	for name, fixture := range adapters {
		if err := b.AddAdapter(name, lorakittest.FixtureDir(t, fixture)); err != nil {
			t.Fatalf("AddAdapter(%s): %v", name, err)
		}
	}
	if got := b.Adapters(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("adapters %v", got)
	}
	for name, fixture := range adapters {
		dir := lorakittest.FixtureDir(t, fixture)
		g := loadGolden(t, dir)
		res, err := b.ClassifyWith(name, g.Texts)
		if err != nil {
			t.Fatalf("ClassifyWith(%s): %v", name, err)
		}
		assertRowsMatchGolden(t, g, res, seq(g.NumTexts))
		report, err := g.CheckAdapter(b, name)
		if err != nil || !report.OK || len(report.Checks) != 5 {
			t.Errorf("%s: parity report %+v, %v", name, report, err)
		}
		info := taskInfo(t, b, name)
		merged := taskInfo(t, loadModel(t, dir, true, Options{}), "")
		if info.Name != name || !info.RuntimeAdapter || info.MaxSeqLen != merged.MaxSeqLen ||
			!slices.Equal(info.Labels, merged.Labels) || !slices.Equal(res.Labels, info.Labels) {
			t.Errorf("%s: info %+v (result labels %v), merged model %+v", name, info, res.Labels, merged)
		}
	}
	// With two adapters nothing is the default: the caller must name one.
	if _, err := b.Classify([]string{"hi"}); !errors.Is(err, ErrInput) {
		t.Errorf("Classify without a name on two adapters: want ErrInput, got %v", err)
	}
	if _, err := b.TaskInfo(""); !errors.Is(err, ErrInput) {
		t.Errorf("TaskInfo without a name on two adapters: want ErrInput, got %v", err)
	}
}

func TestOnlyAdapterIsTheDefault(t *testing.T) {
	b := loadBase(t)
	if _, err := b.Classify([]string{"hi"}); !errors.Is(err, ErrInput) {
		t.Errorf("a base without adapters: want ErrInput, got %v", err)
	}
	dir := lorakittest.FixtureDir(t, "tiny_bert_lora_b")
	if err := b.AddAdapter("b", dir); err != nil {
		t.Fatal(err)
	}
	report, err := loadGolden(t, dir).CheckModel(b)
	if err != nil || !report.OK {
		t.Errorf("the only adapter as the default task: %+v, %v", report, err)
	}
}

func TestRuntimeModelTakesMoreAdaptersMergedTakesNone(t *testing.T) {
	loraA, loraB := lorakittest.FixtureDir(t, "tiny_bert_lora_a"), lorakittest.FixtureDir(t, "tiny_bert_lora_b")
	runtimeModel := loadModel(t, loraA, false, Options{})
	if err := runtimeModel.AddAdapter("b", loraB); err != nil {
		t.Fatal(err)
	}
	if got := runtimeModel.Adapters(); !slices.Equal(got, []string{"b", "tiny_bert_lora_a"}) {
		t.Fatalf("adapters %v", got)
	}
	// "" still means the directory's own task; the added one answers to its name.
	for adapter, dir := range map[string]string{"": loraA, "tiny_bert_lora_a": loraA, "b": loraB} {
		report, err := loadGolden(t, dir).CheckAdapter(runtimeModel, adapter)
		if err != nil || !report.OK {
			t.Errorf("adapter %q: %+v, %v", adapter, report, err)
		}
	}
	merged := loadModel(t, loraA, true, Options{})
	if merged.WeightsSHA256() != "" || runtimeModel.WeightsSHA256() == "" {
		t.Errorf("weights sha256: merged %q, runtime %q", merged.WeightsSHA256(), runtimeModel.WeightsSHA256())
	}
	if err := merged.AddAdapter("b", loraB); !errors.Is(err, ErrInput) {
		t.Errorf("adapter on merged weights: want ErrInput, got %v", err)
	}
	if info := taskInfo(t, merged, ""); info.RuntimeAdapter || info.Name != "tiny_bert_lora_a" {
		t.Errorf("merged task info %+v", info)
	}
}

func TestAdapterErrors(t *testing.T) {
	b := loadBase(t)
	loraA := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	if err := b.AddAdapter("a", loraA); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAdapter("a", loraA); !errors.Is(err, ErrInput) {
		t.Errorf("duplicate name: want ErrInput, got %v", err)
	}
	if err := b.AddAdapter("other-base", lorakittest.FixtureDir(t, "minilm_lora")); !errors.Is(err, ErrConfig) {
		t.Errorf("adapter trained on another base: want ErrConfig, got %v", err)
	}
	if err := b.AddAdapter("x", t.TempDir()); !errors.Is(err, ErrIO) {
		t.Errorf("directory without a manifest: want ErrIO, got %v", err)
	}
	if err := b.AddAdapter("nul\x00name", loraA); !errors.Is(err, ErrInput) {
		t.Errorf("NUL in name: want ErrInput, got %v", err)
	}
	if err := b.AddAdapter("", loraA); !errors.Is(err, ErrInput) {
		t.Errorf("empty name (reserved for the default task): want ErrInput, got %v", err)
	}
	if _, err := b.ClassifyWith("missing", []string{"hi"}); !errors.Is(err, ErrInput) {
		t.Errorf("unknown adapter: want ErrInput, got %v", err)
	}
	if _, err := b.ClassifyWith("nul\x00", []string{"hi"}); !errors.Is(err, ErrInput) {
		t.Errorf("NUL in adapter name: want ErrInput, got %v", err)
	}
	if _, err := b.TaskInfo("missing"); !errors.Is(err, ErrInput) {
		t.Errorf("info of unknown adapter: want ErrInput, got %v", err)
	}
	if !b.RemoveAdapter("a") {
		t.Error("removing a loaded adapter must report true")
	}
	if b.RemoveAdapter("a") {
		t.Error("removing it again must report false")
	}
	if _, err := b.ClassifyWith("a", []string{"hi"}); !errors.Is(err, ErrInput) {
		t.Errorf("classify with a removed adapter: want ErrInput, got %v", err)
	}
	if len(b.Adapters()) != 0 {
		t.Errorf("adapters after removal: %v", b.Adapters())
	}
}

func TestBaseCloseIsIdempotentAndFinal(t *testing.T) {
	b := loadBase(t)
	if err := b.AddAdapter("a", lorakittest.FixtureDir(t, "tiny_bert_lora_a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.ClassifyWith("a", []string{"hi"}); !errors.Is(err, ErrClosed) {
		t.Errorf("ClassifyWith after Close: %v", err)
	}
	if err := b.AddAdapter("b", lorakittest.FixtureDir(t, "tiny_bert_lora_b")); !errors.Is(err, ErrClosed) {
		t.Errorf("AddAdapter after Close: %v", err)
	}
	if _, err := b.TaskInfo("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("TaskInfo after Close: %v", err)
	}
	if b.RemoveAdapter("a") || b.Adapters() != nil {
		t.Error("a closed model has no adapters")
	}
	if b.Name() != "tiny_bert_base" || b.Architecture() != "bert" {
		t.Error("name and architecture stay readable after Close")
	}
}

func TestArchitecturesComeFromTheCore(t *testing.T) {
	archs, err := Architectures()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range archs {
		for _, name := range append([]string{a.ModelType}, a.Aliases...) {
			if name == "" || seen[name] {
				t.Errorf("architecture name %q empty or listed twice in %+v", name, archs)
			}
			seen[name] = true
		}
	}
	// Every fixture loads, so its architecture must be listed.
	m := loadModel(t, lorakittest.FixtureDir(t, "tiny_bert_full"), true, Options{})
	if !seen[m.Architecture()] || !seen[taskInfo(t, m, "").Architecture] {
		t.Errorf("%q is served but not in %+v", m.Architecture(), archs)
	}
	// A model_type outside the list is refused by the loader, which names the same list.
	dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, "tiny_bert_full"))
	lorakittest.EditJSON(t, filepath.Join(dir, "config.json"), func(config map[string]any) {
		config["model_type"] = "not-an-architecture"
	})
	lorakittest.RewriteChecksums(t, dir)
	_, err = Load(dir, true, Options{})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown model_type: want ErrUnsupported, got %v", err)
	}
	for _, a := range archs {
		if !strings.Contains(err.Error(), strconv.Quote(a.ModelType)) {
			t.Errorf("the refusal %q does not name served architecture %q", err, a.ModelType)
		}
	}
}
