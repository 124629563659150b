// Command lorakit-bench times classification of one lorakit model directory through the Go binding
// (--mode native) or through the router over loopback HTTP with dynamic batching (--mode router):
//
//	lorakit-bench --model DIR --threads N --cases FILE --mode native|router [--runtime] [--clients 32]
//	              [--duration 10s] [--warmup 3] [--repeats 30] [--budget 10s] --json OUT
//
// FILE is a JSON list of cases {"name", "batch", "seq_len", "texts"}. OUT receives a JSON list of rows, one
// per case; a short table goes to stderr. rust/lorakit-core/examples/bench_classify.rs is the same native
// timing loop in Rust, the reference for the binding's overhead.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// benchCase is one entry of the cases file.
type benchCase struct {
	Name   string   `json:"name"`
	Batch  int      `json:"batch"`
	SeqLen int      `json:"seq_len"`
	Texts  []string `json:"texts"`
}

// row is one line of the JSON output; the router-only fields are absent from native rows.
type row struct {
	Backend   string   `json:"backend"`
	Case      string   `json:"case"`
	Batch     int      `json:"batch"`
	SeqLen    int      `json:"seq_len"`
	Clients   *int     `json:"clients,omitempty"`
	MedianMS  float64  `json:"median_ms"`
	P50MS     *float64 `json:"p50_ms,omitempty"`
	P99MS     *float64 `json:"p99_ms,omitempty"`
	SeqPerS   float64  `json:"seq_per_s"`
	MeanBatch *float64 `json:"mean_batch,omitempty"`
}

type config struct {
	model    string
	threads  int
	cases    string
	mode     string
	runtime  bool
	clients  int
	duration time.Duration
	warmup   int
	repeats  int
	budget   time.Duration
	out      string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run returns the exit status: 0 when every case ran, 1 when one failed, 2 for usage errors.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	cases, err := readCases(cfg.cases, cfg.mode)
	if err != nil {
		fmt.Fprintf(stderr, "lorakit-bench: %v\n", err)
		return 2
	}
	var rows []row
	if cfg.mode == "native" {
		rows, err = benchNative(cfg, cases, stderr)
	} else {
		rows, err = benchRouter(cfg, cases, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "lorakit-bench: %v\n", err)
		return 1
	}
	if err := writeRows(cfg.out, rows); err != nil {
		fmt.Fprintf(stderr, "lorakit-bench: %v\n", err)
		return 1
	}
	printTable(stderr, rows)
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("lorakit-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{}
	fs.StringVar(&cfg.model, "model", "", "lorakit model directory (required)")
	fs.IntVar(&cfg.threads, "threads", 0, "compute threads (0 = physical cores)")
	fs.StringVar(&cfg.cases, "cases", "", `JSON list of {"name", "batch", "seq_len", "texts"} (required)`)
	fs.StringVar(&cfg.mode, "mode", "", `"native" (the Go binding) or "router" (loopback HTTP, dynamic batching) (required)`)
	fs.BoolVar(&cfg.runtime, "runtime", false, "apply the LoRA adapter at runtime on its base instead of the merged weights")
	fs.IntVar(&cfg.clients, "clients", 32, "router mode: concurrent clients, each sending single-text requests")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "router mode: measured time per case")
	fs.IntVar(&cfg.warmup, "warmup", 3, "untimed calls first (router mode: per client)")
	fs.IntVar(&cfg.repeats, "repeats", 30, "native mode: timed calls per case (the median is reported)")
	fs.DurationVar(&cfg.budget, "budget", 10*time.Second, "native mode: stop repeating a case after this much timed work")
	fs.StringVar(&cfg.out, "json", "", "output file for the rows (required)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if fs.NArg() != 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	for _, f := range []struct{ name, value string }{{"model", cfg.model}, {"cases", cfg.cases}, {"json", cfg.out}} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("--%s is required", f.name))
		}
	}
	if cfg.mode != "native" && cfg.mode != "router" {
		errs = append(errs, fmt.Errorf(`--mode must be "native" or "router", got %q`, cfg.mode))
	}
	if cfg.threads < 0 || cfg.warmup < 0 {
		errs = append(errs, errors.New("--threads and --warmup must not be negative"))
	}
	if cfg.clients <= 0 || cfg.repeats <= 0 || cfg.duration <= 0 || cfg.budget <= 0 {
		errs = append(errs, errors.New("--clients, --repeats, --duration and --budget must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "lorakit-bench: %v\n", err)
		return nil, err
	}
	return cfg, nil
}

// readCases reads and checks the cases file. A native case must hold exactly batch texts (they are one call);
// the router cycles through a case's texts one request at a time.
func readCases(path, mode string) ([]benchCase, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading cases: %w", err)
	}
	var cases []benchCase
	if err := json.Unmarshal(data, &cases); err != nil {
		return nil, fmt.Errorf("cases %s: %w", path, err)
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("cases %s: no cases", path)
	}
	for i, c := range cases {
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("cases %s: case %d has no name", path, i)
		case c.Batch <= 0 || c.SeqLen <= 0:
			return nil, fmt.Errorf("case %s: batch and seq_len must be positive", c.Name)
		case len(c.Texts) == 0:
			return nil, fmt.Errorf("case %s: no texts", c.Name)
		case mode == "native" && len(c.Texts) != c.Batch:
			return nil, fmt.Errorf("case %s: %d texts for a batch of %d", c.Name, len(c.Texts), c.Batch)
		}
	}
	return cases, nil
}

// timeCalls makes warmup untimed calls, then times up to repeats calls, stopping once the timed calls took
// budget in all (at least one is timed); it returns the median and the number timed.
func timeCalls(call func() error, warmup, repeats int, budget time.Duration) (time.Duration, int, error) {
	for range warmup {
		if err := call(); err != nil {
			return 0, 0, err
		}
	}
	var times []time.Duration
	var spent time.Duration
	for range repeats {
		start := time.Now()
		if err := call(); err != nil {
			return 0, 0, err
		}
		d := time.Since(start)
		times = append(times, d)
		if spent += d; spent >= budget {
			break
		}
	}
	return median(times), len(times), nil
}

// median of a non-empty sample: the middle value, or the mean of the two middle ones.
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func writeRows(path string, rows []row) error {
	data, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintf(w, "%-20s %-16s %6s %7s %8s %10s %10s %10s %10s\n", "backend", "case", "batch", "seq_len", "clients",
		"median_ms", "p99_ms", "seq/s", "mean_batch")
	for _, r := range rows {
		clients, p99, mean := "-", "-", "-"
		if r.Clients != nil {
			clients = fmt.Sprint(*r.Clients)
		}
		if r.P99MS != nil {
			p99 = fmt.Sprintf("%.2f", *r.P99MS)
		}
		if r.MeanBatch != nil {
			mean = fmt.Sprintf("%.1f", *r.MeanBatch)
		}
		fmt.Fprintf(w, "%-20s %-16s %6d %7d %8s %10.2f %10s %10.1f %10s\n", r.Backend, r.Case, r.Batch, r.SeqLen,
			clients, r.MedianMS, p99, r.SeqPerS, mean)
	}
}
