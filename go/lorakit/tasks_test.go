package lorakit

import (
	"errors"
	"slices"
	"testing"

	"lorakit/lorakit/lorakittest"
)

func loadBase(t testing.TB) *Base {
	t.Helper()
	b, err := LoadBase(lorakittest.FixtureDir(t, "tiny_bert_base"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBaseServesSeveralAdaptersAtGoldenParity(t *testing.T) {
	b := loadBase(t)
	adapters := map[string]string{"a": "tiny_bert_lora_a", "b": "tiny_bert_lora_b"}
	for name, fixture := range adapters {
		if err := b.AddAdapter(name, lorakittest.FixtureDir(t, fixture)); err != nil {
			t.Fatalf("AddAdapter(%s): %v", name, err)
		}
	}
	got := b.Adapters()
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("adapters %v", got)
	}
	for name, fixture := range adapters {
		dir := lorakittest.FixtureDir(t, fixture)
		g := loadGolden(t, dir)
		res, err := b.Classify(g.Texts, name)
		if err != nil {
			t.Fatalf("Classify(%s): %v", name, err)
		}
		assertRowsMatchGolden(t, g, res, seq(g.NumTexts))
		report, err := g.CheckBase(b, name)
		if err != nil || !report.OK {
			t.Errorf("%s: parity report %+v, %v", name, report, err)
		}
		labels, err := b.Labels(name)
		merged := loadModel(t, dir, true, Options{})
		if err != nil || !slices.Equal(labels, merged.Labels()) || !slices.Equal(res.Labels, labels) {
			t.Errorf("%s: labels %v (result %v), model %v, %v", name, labels, res.Labels, merged.Labels(), err)
		}
	}
}

func TestBaseAdapterErrors(t *testing.T) {
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
	if _, err := b.Classify([]string{"hi"}, "missing"); !errors.Is(err, ErrInput) {
		t.Errorf("unknown adapter: want ErrInput, got %v", err)
	}
	if _, err := b.Labels("missing"); !errors.Is(err, ErrInput) {
		t.Errorf("labels of unknown adapter: want ErrInput, got %v", err)
	}
	if !b.RemoveAdapter("a") {
		t.Error("removing a loaded adapter must report true")
	}
	if b.RemoveAdapter("a") {
		t.Error("removing it again must report false")
	}
	if _, err := b.Classify([]string{"hi"}, "a"); !errors.Is(err, ErrInput) {
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
	if _, err := b.Classify([]string{"hi"}, "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Classify after Close: %v", err)
	}
	if err := b.AddAdapter("b", lorakittest.FixtureDir(t, "tiny_bert_lora_b")); !errors.Is(err, ErrClosed) {
		t.Errorf("AddAdapter after Close: %v", err)
	}
	if _, err := b.Labels("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Labels after Close: %v", err)
	}
	if b.RemoveAdapter("a") || b.Adapters() != nil {
		t.Error("a closed base has no adapters")
	}
}
