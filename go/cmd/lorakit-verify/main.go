// Command lorakit-verify recomputes a model directory's golden vectors through the native core (CGO) and
// compares them with the values PyTorch wrote at export, for every task: token ids exactly; logits, token
// logits (real tokens) or embeddings within the file's tolerance (default 1e-4); the argmax of every row (of
// every token for token classification) and the entities exactly (scores within the tolerance); for a calibrated
// sequence classifier (lorakit.json calibration) the calibrated probabilities within the tolerance and the
// review verdicts (needs_review, except within the tolerance of the threshold); for
// generative classification the left-padded prompt ids exactly, the next-token logits within the tolerance,
// the label distributions and every few-shot case within prob_tolerance with the same choice. It checks
// the merged weights and, when the directory has an adapter, the base + adapter runtime path.
//
// Usage: lorakit-verify MODEL_DIR [--merged-only] [--json]
//
// Exit status: 0 when every check passes, 1 on any mismatch, 2 on a usage or load error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/go/lorakit"
)

const (
	exitPass     = 0
	exitMismatch = 1
	exitError    = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	modelDir   string
	mergedOnly bool
	json       bool
}

// parseArgs accepts the flags before or after MODEL_DIR.
func parseArgs(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("lorakit-verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&cfg.mergedOnly, "merged-only", false, "check only the merged weights (model.safetensors)")
	fs.BoolVar(&cfg.json, "json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lorakit-verify MODEL_DIR [--merged-only] [--json]")
		fs.PrintDefaults()
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return cfg, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fs.Usage()
		return cfg, fmt.Errorf("expected exactly one MODEL_DIR, got %d", len(positional))
	}
	cfg.modelDir = positional[0]
	return cfg, nil
}

// modeRun is the outcome of one way of loading the model.
type modeRun struct {
	Mode    string // "merged" or "runtime"
	Skipped string // why the mode was not run, if it was not
	Report  *lorakit.ParityReport
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitPass
		}
		fmt.Fprintln(stderr, "lorakit-verify:", err)
		return exitError
	}
	golden, runs, err := verify(cfg)
	if err != nil {
		if cfg.json {
			writeJSONError(stdout, cfg.modelDir, err)
		}
		fmt.Fprintln(stderr, "lorakit-verify:", err)
		return exitError
	}
	ok := true
	for _, r := range runs {
		ok = ok && (r.Report == nil || r.Report.OK)
	}
	if cfg.json {
		writeJSON(stdout, cfg.modelDir, golden, runs, ok)
	} else {
		writeText(stdout, cfg.modelDir, golden, runs, ok)
	}
	if !ok {
		return exitMismatch
	}
	return exitPass
}

// verify runs every applicable mode; an error means nothing could be compared (bad directory, load failure).
func verify(cfg config) (*lorakit.Golden, []modeRun, error) {
	info, err := os.Stat(cfg.modelDir)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", lorakit.ErrIO, err)
	}
	if !info.IsDir() {
		return nil, nil, fmt.Errorf("%w: %s is not a directory", lorakit.ErrIO, cfg.modelDir)
	}
	golden, err := lorakit.ReadGolden(filepath.Join(cfg.modelDir, lorakit.GoldenFile))
	if err != nil {
		return nil, nil, err
	}
	hasMerged := fileExists(filepath.Join(cfg.modelDir, "model.safetensors"))
	hasAdapter := fileExists(filepath.Join(cfg.modelDir, "adapter_config.json"))
	if !hasMerged && (cfg.mergedOnly || !hasAdapter) {
		return nil, nil, fmt.Errorf("%w: %s has no model.safetensors to verify", lorakit.ErrIO, cfg.modelDir)
	}

	runtimeSkip := ""
	switch {
	case cfg.mergedOnly:
		runtimeSkip = "--merged-only"
	case !hasAdapter:
		runtimeSkip = "no adapter_config.json"
	}
	mergedSkip := ""
	if !hasMerged {
		mergedSkip = "no model.safetensors"
	}

	var runs []modeRun
	for _, mode := range []struct {
		name   string
		merged bool
		skip   string
	}{{"merged", true, mergedSkip}, {"runtime", false, runtimeSkip}} {
		if mode.skip != "" {
			runs = append(runs, modeRun{Mode: mode.name, Skipped: mode.skip})
			continue
		}
		report, err := checkMode(cfg.modelDir, mode.merged, golden)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", mode.name, err)
		}
		runs = append(runs, modeRun{Mode: mode.name, Report: report})
	}
	return golden, runs, nil
}

func checkMode(dir string, merged bool, golden *lorakit.Golden) (*lorakit.ParityReport, error) {
	model, err := lorakit.Load(dir, merged, lorakit.Options{})
	if err != nil {
		return nil, err
	}
	defer model.Close()
	return golden.CheckModel(model)
}

func fileExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}
