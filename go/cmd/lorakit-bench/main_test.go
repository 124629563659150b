package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// safeBuffer collects a child process's output while the test reads it.
type safeBuffer = routertest.SyncBuffer

func writeCases(t *testing.T, cases []benchCase) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cases.json")
	data, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUsageErrors(t *testing.T) {
	cases := writeCases(t, []benchCase{{Name: "a", Batch: 1, SeqLen: 8, Texts: []string{"hi"}}})
	for name, args := range map[string][]string{
		"no flags":       {},
		"bad mode":       {"--model", "m", "--cases", cases, "--json", "o", "--mode", "grpc"},
		"no json":        {"--model", "m", "--cases", cases, "--mode", "native"},
		"zero repeats":   {"--model", "m", "--cases", cases, "--json", "o", "--mode", "native", "--repeats", "0"},
		"zero clients":   {"--model", "m", "--cases", cases, "--json", "o", "--mode", "router", "--clients", "0"},
		"neg threads":    {"--model", "m", "--cases", cases, "--json", "o", "--mode", "native", "--threads", "-1"},
		"missing cases":  {"--model", "m", "--cases", "/nonexistent.json", "--json", "o", "--mode", "native"},
		"extra argument": {"--model", "m", "--cases", cases, "--json", "o", "--mode", "native", "now"},
	} {
		var stderr safeBuffer
		if code := run(args, &stderr); code != 2 || stderr.String() == "" {
			t.Errorf("%s: exit %d, stderr %q", name, code, stderr.String())
		}
	}
}

func TestReadCasesChecksEachCase(t *testing.T) {
	for name, tc := range map[string]struct {
		cases []benchCase
		mode  string
		want  string
	}{
		"empty":          {nil, "native", "no cases"},
		"no name":        {[]benchCase{{Batch: 1, SeqLen: 8, Texts: []string{"a"}}}, "native", "has no name"},
		"zero batch":     {[]benchCase{{Name: "a", SeqLen: 8, Texts: []string{"a"}}}, "native", "must be positive"},
		"no texts":       {[]benchCase{{Name: "a", Batch: 1, SeqLen: 8}}, "router", "no texts"},
		"native too few": {[]benchCase{{Name: "a", Batch: 2, SeqLen: 8, Texts: []string{"a"}}}, "native", "1 texts for a batch of 2"},
	} {
		_, err := readCases(writeCases(t, tc.cases), tc.mode)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	// The router cycles through texts, so it takes fewer texts than the batch.
	if _, err := readCases(writeCases(t, []benchCase{{Name: "a", Batch: 2, SeqLen: 8, Texts: []string{"a"}}}), "router"); err != nil {
		t.Errorf("router case: %v", err)
	}
}

// Warmup calls are untimed; timing stops at the repeat count or once the timed calls used the budget.
func TestTimeCallsWarmupRepeatsBudget(t *testing.T) {
	calls := 0
	call := func() error { calls++; time.Sleep(2 * time.Millisecond); return nil }
	med, n, err := timeCalls(call, 2, 5, time.Hour)
	if err != nil || n != 5 || calls != 7 || med < 2*time.Millisecond {
		t.Errorf("repeats: median %v, %d timed, %d calls, %v", med, n, calls, err)
	}
	calls = 0
	_, n, _ = timeCalls(call, 0, 1000, 10*time.Millisecond)
	if n < 1 || n > 5 || calls != n {
		t.Errorf("budget of 10ms over 2ms calls timed %d (%d calls)", n, calls)
	}
	if got := median([]time.Duration{4, 1, 3, 2}); got != 2 { // (2+3)/2 in integer nanoseconds
		t.Errorf("even median %v", got)
	}
	if got := median([]time.Duration{5, 1, 3}); got != 3 {
		t.Errorf("odd median %v", got)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Both modes write the documented rows for a real (tiny) model, merged and with the adapter at runtime.
func TestWritesRowsForEveryMode(t *testing.T) {
	model := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	cases := writeCases(t, []benchCase{
		{Name: "2x8", Batch: 2, SeqLen: 8, Texts: []string{"hello there", "please close my account"}},
		{Name: "1x4", Batch: 1, SeqLen: 4, Texts: []string{"hi"}},
	})
	nativeKeys := []string{"backend", "batch", "case", "median_ms", "seq_len", "seq_per_s"}
	routerKeys := []string{"backend", "batch", "case", "clients", "mean_batch", "median_ms", "p50_ms", "p99_ms", "seq_len", "seq_per_s"}
	for _, tc := range []struct {
		args    []string
		backend string
		keys    []string
	}{
		{[]string{"--mode", "native"}, "native-go", nativeKeys},
		{[]string{"--mode", "native", "--runtime"}, "native-go-runtime", nativeKeys},
		{[]string{"--mode", "router", "--clients", "4", "--duration", "300ms", "--warmup", "1"}, "router", routerKeys},
		{[]string{"--mode", "router", "--runtime", "--clients", "2", "--duration", "200ms"}, "router", routerKeys},
	} {
		out := filepath.Join(t.TempDir(), "rows.json")
		var stderr safeBuffer
		args := append([]string{"--model", model, "--threads", "1", "--cases", cases, "--json", out, "--repeats", "3"}, tc.args...)
		if code := run(args, &stderr); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr.String())
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var rows []map[string]any
		if err := json.Unmarshal(data, &rows); err != nil || len(rows) != 2 {
			t.Fatalf("%v: rows %s (%v)", tc.args, data, err)
		}
		for i, r := range rows {
			if !slices.Equal(keys(r), tc.keys) || r["backend"] != tc.backend || r["case"] != []string{"2x8", "1x4"}[i] {
				t.Errorf("%v: row %v", tc.args, r)
			}
			if r["median_ms"].(float64) <= 0 || r["seq_per_s"].(float64) <= 0 {
				t.Errorf("%v: no timing in %v", tc.args, r)
			}
			if tc.backend == "router" && (r["batch"] != 1.0 || r["mean_batch"].(float64) < 1 || r["p99_ms"].(float64) < r["p50_ms"].(float64)) {
				t.Errorf("%v: router row %v", tc.args, r)
			}
		}
		if !strings.Contains(stderr.String(), "median_ms") {
			t.Errorf("%v: no table on stderr: %s", tc.args, stderr.String())
		}
	}
}
