package lorakit

import (
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

func loadGolden(t testing.TB, dir string) *Golden {
	t.Helper()
	g, err := ReadGolden(filepath.Join(dir, GoldenFile))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func loadModel(t testing.TB, dir string, merged bool, opts Options) *Model {
	t.Helper()
	m, err := Load(dir, merged, opts)
	if err != nil {
		t.Fatalf("Load(%s, merged=%v): %v", dir, merged, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// assertRowsMatchGolden checks row i of res against golden row rows[i] within the golden tolerance.
func assertRowsMatchGolden(t *testing.T, g *Golden, res *Result, rows []int) {
	t.Helper()
	if res.NumTexts != len(rows) || res.NumLabels != g.NumLabels || len(res.Logits) != len(rows)*g.NumLabels {
		t.Fatalf("result shape [%d %d] (%d logits), want [%d %d]", res.NumTexts, res.NumLabels, len(res.Logits),
			len(rows), g.NumLabels)
	}
	for i, row := range rows {
		for j := 0; j < g.NumLabels; j++ {
			want, got := g.Logits[row*g.NumLabels+j], res.Logits[i*g.NumLabels+j]
			if diff := math.Abs(float64(want - got)); !(diff <= g.Tolerance) {
				t.Fatalf("row %d (golden %d) col %d: got %v, want %v (|diff| %g)", i, row, j, got, want, diff)
			}
		}
	}
}

func TestClassifyEqualsGoldenLogits(t *testing.T) {
	for _, name := range []string{"tiny_bert_lora_a", "tiny_bert_lora_b", "tiny_bert_full"} {
		dir := lorakittest.FixtureDir(t, name)
		g := loadGolden(t, dir)
		modes := []bool{true}
		if name != "tiny_bert_full" {
			modes = append(modes, false)
		}
		for _, merged := range modes {
			m := loadModel(t, dir, merged, Options{})
			res, err := m.Classify(g.Texts)
			if err != nil {
				t.Fatalf("%s merged=%v: %v", name, merged, err)
			}
			assertRowsMatchGolden(t, g, res, seq(g.NumTexts))
			if labels := taskInfo(t, m, "").Labels; !slices.Equal(res.Labels, labels) {
				t.Errorf("%s: result labels %v != task labels %v", name, res.Labels, labels)
			}
			report, err := g.CheckModel(m)
			if err != nil || !report.OK {
				t.Errorf("%s merged=%v: parity report %+v, %v", name, merged, report, err)
			}
		}
	}
}

func TestTokenizeEqualsGoldenIDs(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	g := loadGolden(t, dir)
	m := loadModel(t, dir, true, Options{})
	enc, err := m.Tokenize(g.Texts)
	if err != nil {
		t.Fatal(err)
	}
	if enc.NumTexts != g.NumTexts || enc.SeqLen != g.SeqLen {
		t.Fatalf("encoding [%d %d], golden [%d %d]", enc.NumTexts, enc.SeqLen, g.NumTexts, g.SeqLen)
	}
	if !slices.Equal(enc.InputIDs, g.InputIDs) || !slices.Equal(enc.AttentionMask, g.AttentionMask) {
		t.Fatal("token ids or attention mask differ from golden")
	}
}

func TestMetadataComesFromTheManifest(t *testing.T) {
	m := loadModel(t, lorakittest.FixtureDir(t, "tiny_bert_lora_a"), true, Options{})
	info := taskInfo(t, m, "")
	want := TaskInfo{Name: "tiny_bert_lora_a", Task: "sequence_classification", Architecture: "bert",
		Labels: []string{"negative", "neutral", "positive"}, MaxSeqLen: 32, Calibration: Calibration{Temperature: 1}}
	if !reflect.DeepEqual(*info, want) {
		t.Errorf("task info %+v, want %+v", *info, want)
	}
	if m.Name() != want.Name || m.Architecture() != "bert" {
		t.Errorf("name %q architecture %q", m.Name(), m.Architecture())
	}
	if named := taskInfo(t, m, "tiny_bert_lora_a"); !reflect.DeepEqual(named, info) {
		t.Errorf("the default task by name: %+v", named)
	}
	info.Labels[0] = "changed"
	if taskInfo(t, m, "").Labels[0] != "negative" {
		t.Error("TaskInfo must return a copy")
	}
	if !strings.HasPrefix(Version(), "0.") {
		t.Errorf("version %q", Version())
	}
}

func TestProbabilitiesAndTopK(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_lora_b")
	g := loadGolden(t, dir)
	m := loadModel(t, dir, true, Options{})
	res, err := m.Classify(g.Texts)
	if err != nil {
		t.Fatal(err)
	}
	probs := res.Probabilities()
	if len(probs) != len(res.Logits) {
		t.Fatalf("%d probabilities for %d logits", len(probs), len(res.Logits))
	}
	for i := 0; i < res.NumTexts; i++ {
		row := probs[i*res.NumLabels : (i+1)*res.NumLabels]
		sum := float32(0)
		for _, p := range row {
			sum += p
		}
		if math.Abs(float64(sum-1)) > 1e-5 {
			t.Errorf("row %d sums to %v", i, sum)
		}
		top := res.TopK(i, 3)
		if len(top) != 3 || top[0].Prob < top[1].Prob || top[1].Prob < top[2].Prob {
			t.Fatalf("row %d top-3 not sorted: %+v", i, top)
		}
		best := argmaxOf(res.Logits[i*res.NumLabels : (i+1)*res.NumLabels])
		if top[0].Index != best || top[0].Label != res.Labels[best] || top[0].Prob != row[best] {
			t.Errorf("row %d top-1 %+v, argmax %d", i, top[0], best)
		}
	}
	if got := res.TopK(0, 99); len(got) != res.NumLabels {
		t.Errorf("k is clamped to the label count, got %d", len(got))
	}
	if res.TopK(-1, 1) != nil || res.TopK(res.NumTexts, 1) != nil || res.TopK(0, 0) != nil {
		t.Error("out-of-range TopK must be nil")
	}
	probs[0] = 42
	if res.Probabilities()[0] == 42 {
		t.Error("Probabilities must return a copy")
	}
}

func TestBatchLimits(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	g := loadGolden(t, dir)

	// More than 1000 texts in one call (the limit where fixed-size array casts used to panic); rows are
	// golden texts in a rotating order, so every row can be checked against its golden logits.
	const maxBatch = 1500
	m := loadModel(t, dir, true, Options{MaxBatch: maxBatch})
	texts, rows := make([]string, maxBatch), make([]int, maxBatch)
	for i := range texts {
		rows[i] = (i * 7) % g.NumTexts
		texts[i] = g.Texts[rows[i]]
	}
	res, err := m.Classify(texts)
	if err != nil {
		t.Fatalf("%d texts: %v", maxBatch, err)
	}
	assertRowsMatchGolden(t, g, res, rows)
	if len(res.TokensIn) != maxBatch || len(res.TokensUsed) != maxBatch {
		t.Fatalf("token counts: %d in, %d used", len(res.TokensIn), len(res.TokensUsed))
	}

	_, err = m.Classify(append(texts, "one too many"))
	if !errors.Is(err, ErrInput) {
		t.Errorf("%d texts with MaxBatch %d: want ErrInput, got %v", maxBatch+1, maxBatch, err)
	}
	defaults := loadModel(t, dir, true, Options{})
	if _, err := defaults.Classify(make([]string, 1025)); !errors.Is(err, ErrInput) {
		t.Errorf("1025 texts with the default limit: want ErrInput, got %v", err)
	}
	if _, err := defaults.Classify(nil); !errors.Is(err, ErrInput) {
		t.Errorf("empty batch: want ErrInput, got %v", err)
	}
}

func TestTruncationIsReported(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	m := loadModel(t, dir, true, Options{})
	maxSeqLen := taskInfo(t, m, "").MaxSeqLen
	long := strings.Repeat("payment declined abroad ", 200)
	res, err := m.Classify([]string{"hi", long})
	if err != nil {
		t.Fatal(err)
	}
	if res.TokensUsed[1] != maxSeqLen || res.TokensIn[1] <= maxSeqLen {
		t.Errorf("long text: %d tokens in, %d used (max %d)", res.TokensIn[1], res.TokensUsed[1], maxSeqLen)
	}
	if res.TokensIn[0] != res.TokensUsed[0] || res.TokensUsed[0] < 3 {
		t.Errorf("short text: %d in, %d used", res.TokensIn[0], res.TokensUsed[0])
	}
}

func TestBadTextsAreInputErrors(t *testing.T) {
	m := loadModel(t, lorakittest.FixtureDir(t, "tiny_bert_lora_a"), true, Options{})
	_, err := m.Classify([]string{"fine", "bad \xff byte"})
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "text 1") {
		t.Errorf("invalid UTF-8: want ErrInput naming text 1, got %v", err)
	}
	if _, err := m.Tokenize([]string{"\xc3\x28"}); !errors.Is(err, ErrInput) {
		t.Errorf("invalid UTF-8 in Tokenize: want ErrInput, got %v", err)
	}
	// Empty strings and NUL bytes are valid text: they cross the ABI by length, not NUL-terminated.
	res, err := m.Classify([]string{"", "a\x00b"})
	if err != nil || res.NumTexts != 2 {
		t.Errorf("empty and NUL-containing texts: %v", err)
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
