package lorakit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

func TestExtractEntitiesEqualsGolden(t *testing.T) {
	f := fixtureOf(t, TaskTokenClassification)
	dir := lorakittest.FixtureDir(t, f.Name)
	g := loadGolden(t, dir)
	m := loadModel(t, dir, true, Options{})
	res, err := m.ExtractEntities(g.Texts)
	if err != nil {
		t.Fatal(err)
	}
	info := taskInfo(t, m, "")
	if !slices.Equal(res.Labels, info.Labels) || res.NumLabels != len(info.Labels) || res.NumTexts != g.NumTexts {
		t.Fatalf("result labels %v (%d texts), task labels %v", res.Labels, res.NumTexts, info.Labels)
	}
	found := 0
	for i, want := range g.Entities {
		if len(res.Entities[i]) != len(want) {
			t.Fatalf("text %d: entities %+v, golden %+v", i, res.Entities[i], want)
		}
		runes := []rune(g.Texts[i])
		for j, e := range res.Entities[i] {
			w := want[j]
			if e.Type != w.Type || e.Start != w.Start || e.End != w.End || e.Text != w.Text ||
				math.Abs(float64(e.Score-w.Score)) > g.Tolerance {
				t.Errorf("text %d entity %d: %+v, golden %+v", i, j, e, w)
			}
			if string(runes[e.Start:e.End]) != e.Text {
				t.Errorf("text %d entity %d: %q is not runes [%d, %d) of %q", i, j, e.Text, e.Start, e.End, g.Texts[i])
			}
		}
		found += len(want)
		if got := len(res.TokenLogits[i]); got != res.TokensUsed[i]*res.NumLabels {
			t.Errorf("text %d: %d token logits for %d tokens", i, got, res.TokensUsed[i])
		}
	}
	if found == 0 {
		t.Error("the golden texts hold no entity: the fixture cannot show that spans survive the ABI")
	}
}

func TestMaskUsesTheCoreMasking(t *testing.T) {
	text := "Zoë\x00 lives in Örebro."
	got, err := Mask(text, []Entity{{Type: "LOC", Start: 14, End: 20}, {Type: "PER", Start: 0, End: 3}})
	if err != nil || got != "[PER]\x00 lives in [LOC]." {
		t.Errorf("Mask: %q, %v", got, err)
	}
	// Overlapping and out-of-range spans are left alone, as the core does.
	if got, err := Mask(text, []Entity{{Type: "A", Start: 0, End: 4}, {Type: "B", Start: 2, End: 40}}); err != nil ||
		got != "[A] lives in Örebro." {
		t.Errorf("overlapping spans: %q, %v", got, err)
	}
	if got, err := Mask("", nil); err != nil || got != "" {
		t.Errorf("empty text: %q, %v", got, err)
	}
	if _, err := Mask(text, []Entity{{Type: "P\x00", Start: 0, End: 1}}); !errors.Is(err, ErrInput) {
		t.Errorf("NUL in a type: want ErrInput, got %v", err)
	}
	if _, err := Mask(text, []Entity{{Type: "P", Start: -1, End: 1}}); !errors.Is(err, ErrInput) {
		t.Errorf("negative span: want ErrInput, got %v", err)
	}
	if _, err := Mask("bad \xff", nil); !errors.Is(err, ErrInput) {
		t.Errorf("invalid UTF-8: want ErrInput, got %v", err)
	}
	// Entities straight from the model mask their own text.
	f := fixtureOf(t, TaskTokenClassification)
	g := loadGolden(t, lorakittest.FixtureDir(t, f.Name))
	for i, entities := range g.Entities {
		masked, err := Mask(g.Texts[i], entities)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entities {
			if !strings.Contains(masked, "["+e.Type+"]") {
				t.Errorf("text %d: %q lacks [%s]", i, masked, e.Type)
			}
		}
	}
}

// normalizes reads the manifest's embedding normalisation.
func normalizes(t *testing.T, dir string) bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "lorakit.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		Normalize bool `json:"normalize"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	return manifest.Normalize
}

func TestEmbedEqualsGolden(t *testing.T) {
	f := fixtureOf(t, TaskEmbedding)
	dir := lorakittest.FixtureDir(t, f.Name)
	g := loadGolden(t, dir)
	m := loadModel(t, dir, true, Options{})
	res, err := m.Embed(g.Texts)
	if err != nil {
		t.Fatal(err)
	}
	if info := taskInfo(t, m, ""); info.Dim != g.Dim || res.Dim != g.Dim || len(info.Labels) != 0 {
		t.Fatalf("dim: task info %+v, result %d, golden %d", info, res.Dim, g.Dim)
	}
	for i := range g.NumTexts {
		row := res.Row(i)
		norm := 0.0
		for j, v := range row {
			norm += float64(v) * float64(v)
			if d := math.Abs(float64(v - g.Embeddings[i*g.Dim+j])); d > g.Tolerance {
				t.Fatalf("row %d dim %d: %v, golden %v", i, j, v, g.Embeddings[i*g.Dim+j])
			}
		}
		if normalizes(t, dir) && math.Abs(math.Sqrt(norm)-1) > 1e-4 {
			t.Errorf("row %d has norm %v, but the manifest normalises", i, math.Sqrt(norm))
		}
	}
	if res.Row(-1) != nil || res.Row(res.NumTexts) != nil {
		t.Error("out-of-range rows must be nil")
	}
}

// Each task kind answers only to its own call; the refusal names the right one.
func TestTheWrongCallIsAnInputError(t *testing.T) {
	token := loadModel(t, lorakittest.FixtureDir(t, fixtureOf(t, TaskTokenClassification).Name), true, Options{})
	embed := loadModel(t, lorakittest.FixtureDir(t, fixtureOf(t, TaskEmbedding).Name), true, Options{})
	seq := loadModel(t, lorakittest.FixtureDir(t, "tiny_bert_lora_a"), true, Options{})
	texts := []string{"hello"}
	calls := []struct {
		what string
		err  error
		want string
	}{
		{"Classify on token classification", second(token.Classify(texts)), "extract_entities"},
		{"Embed on token classification", second(token.Embed(texts)), "extract_entities"},
		{"Classify on an embedding", second(embed.Classify(texts)), "embed"},
		{"ExtractEntities on an embedding", second(embed.ExtractEntities(texts)), "embed"},
		{"ExtractEntities on sequence classification", second(seq.ExtractEntities(texts)), "classify"},
		{"Embed on sequence classification", second(seq.Embed(texts)), "classify"},
	}
	for _, c := range calls {
		if !errors.Is(c.err, ErrInput) || !strings.Contains(c.err.Error(), "use "+c.want) {
			t.Errorf("%s: want ErrInput naming %s, got %v", c.what, c.want, c.err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestUnsafeVerdictsComeFromTheManifest(t *testing.T) {
	src := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	plain := loadModel(t, src, true, Options{})
	g := loadGolden(t, src)
	res, err := plain.Classify(g.Texts)
	if err != nil {
		t.Fatal(err)
	}
	if res.HasUnsafeLabels || res.Unsafe != nil || res.UnsafeScore != nil || taskInfo(t, plain, "").UnsafeLabels != nil {
		t.Errorf("undeclared unsafe labels must give no verdicts: %+v", res)
	}

	// lorakit.json is outside its own checksum table, so declaring labels needs no other change.
	dir := lorakittest.CopyModelDir(t, src)
	lorakittest.EditManifest(t, dir, func(m map[string]any) { m["unsafe_labels"] = []string{"negative", "positive"} })
	for _, merged := range []bool{true, false} {
		m := loadModel(t, dir, merged, Options{})
		if got := taskInfo(t, m, "").UnsafeLabels; !reflect.DeepEqual(got, []string{"negative", "positive"}) {
			t.Errorf("task info unsafe labels %v", got)
		}
		res, err := m.Classify(g.Texts)
		if err != nil {
			t.Fatal(err)
		}
		if !res.HasUnsafeLabels || len(res.Unsafe) != res.NumTexts || len(res.UnsafeScore) != res.NumTexts {
			t.Fatalf("merged=%v: verdicts %v scores %v", merged, res.Unsafe, res.UnsafeScore)
		}
		probs := res.Probabilities()
		for i := range res.NumTexts {
			top := res.TopK(i, 1)[0]
			want := probs[i*3] + probs[i*3+2]
			if res.Unsafe[i] != (top.Label != "neutral") || math.Abs(float64(res.UnsafeScore[i]-want)) > 1e-6 {
				t.Errorf("text %d: unsafe %v score %v, top %+v, want score %v", i, res.Unsafe[i], res.UnsafeScore[i], top, want)
			}
		}
	}
}

// failing names the failed checks of a report with their detail.
func failing(report *ParityReport) string {
	var out []string
	for _, c := range report.Checks {
		if !c.OK {
			out = append(out, fmt.Sprintf("%s (%d mismatches, max |diff| %g) %s", c.Output, c.Mismatches, c.MaxAbsDiff, c.Detail))
		}
	}
	return strings.Join(out, "; ")
}

func TestTaskCallsAreSafeConcurrentlyAndEndAtClose(t *testing.T) {
	// One shared base per base fixture, every task fixture added to its own base.
	bases := map[string]*Model{}
	type call struct {
		base, adapter string
		golden        *Golden
	}
	var calls []call
	for i, f := range lorakittest.TaskFixtures(t) {
		if bases[f.Base] == nil {
			b, err := LoadBase(lorakittest.FixtureDir(t, f.Base), Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			bases[f.Base] = b
		}
		dir := lorakittest.FixtureDir(t, f.Name)
		adapter := fmt.Sprintf("task%d", i)
		if err := bases[f.Base].AddAdapter(adapter, dir); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, call{f.Base, adapter, loadGolden(t, dir)})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 3 {
				c := calls[(w+k)%len(calls)]
				report, err := c.golden.CheckAdapter(bases[c.base], c.adapter)
				if err == nil && !report.OK {
					err = fmt.Errorf("%s on %s: a concurrent result differs from golden: %s", c.adapter, c.base,
						failing(report))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, c := range calls {
		b := bases[c.base]
		b.Close()
		if _, err := b.ExtractEntitiesWith(c.adapter, []string{"x"}); !errors.Is(err, ErrClosed) {
			t.Errorf("ExtractEntitiesWith after Close: %v", err)
		}
		if _, err := b.EmbedWith(c.adapter, []string{"x"}); !errors.Is(err, ErrClosed) {
			t.Errorf("EmbedWith after Close: %v", err)
		}
	}
}
