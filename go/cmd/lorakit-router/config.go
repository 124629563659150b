package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/router"
)

// config is everything the command line decides.
type config struct {
	models          string
	addr            string
	device          string
	threads         int
	verifyGolden    bool
	poll            time.Duration
	limits          router.Limits
	priority        discovery.Priority
	aliases         map[string]string
	shutdownTimeout time.Duration
	logLevel        slog.Level
	compat          router.CompatModels
	followSymlinks  bool
	readTimeout     time.Duration
	loadTimeout     time.Duration
	batching        router.Batching
}

var devicePattern = regexp.MustCompile(`^(cpu|cuda(:[0-9]+)?)$`)

// aliasFlag collects repeated --alias NAME=TASK values.
type aliasFlag map[string]string

func (a aliasFlag) String() string {
	parts := make([]string, 0, len(a))
	for k, v := range a {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (a aliasFlag) Set(s string) error {
	name, task, ok := strings.Cut(s, "=")
	if !ok || name == "" || task == "" {
		return fmt.Errorf("want NAME=TASK, got %q", s)
	}
	if _, dup := a[name]; dup {
		return fmt.Errorf("%s has two aliases", name)
	}
	a[name] = task
	return nil
}

const usageHeader = `lorakit-router serves every lorakit model directory under --models over HTTP.

Each model answers to its manifest "name" as its task (override with --alias); when several models share a
task, --priority decides which serves it and the others stay addressable by directory name. SIGHUP (and
--poll when manifests change) reloads without dropping requests; SIGINT/SIGTERM shut down gracefully.

Flags:
`

// parseFlags reads the command line; errors are usage errors (exit status 2). defaultPriority is the
// --priority default (the native core's architectures).
func parseFlags(args []string, stderr io.Writer, defaultPriority discovery.Priority) (*config, error) {
	fs := flag.NewFlagSet("lorakit-router", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHeader)
		fs.PrintDefaults()
	}
	def := router.DefaultLimits()
	cfg := &config{aliases: map[string]string{}}
	var priority, logLevel string
	var maxBody int64
	fs.StringVar(&cfg.models, "models", "", "models root: every subdirectory with a lorakit.json is served (required)")
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&cfg.device, "device", "cpu", `compute device: "cpu", "cuda" or "cuda:N"`)
	fs.IntVar(&cfg.threads, "threads", 0, "compute threads per model (0 = physical cores)")
	fs.BoolVar(&cfg.verifyGolden, "verify-golden", false, "recompute golden.safetensors at load and refuse models that differ")
	fs.DurationVar(&cfg.poll, "poll", 0, "rescan the models root this often and reload when manifests changed (0 = only on SIGHUP)")
	fs.IntVar(&cfg.limits.MaxBatch, "max-batch", def.MaxBatch, "most texts per batch request")
	fs.IntVar(&cfg.limits.MaxTextBytes, "max-text-bytes", def.MaxTextBytes, "most bytes per text")
	fs.Int64Var(&maxBody, "max-body-bytes", def.MaxBodyBytes, "most bytes per request body")
	fs.IntVar(&cfg.limits.MaxExamples, "max-examples", def.MaxExamples, "most labelled examples per few-shot request")
	fs.IntVar(&cfg.limits.MaxLabels, "max-labels", def.MaxLabels, "most labels per few-shot request")
	fs.StringVar(&priority, "priority", strings.Join(defaultPriority, ","), "architectures in serving preference order, best first (default: the native core's order)")
	fs.Var(aliasFlag(cfg.aliases), "alias", "NAME=TASK: serve the model with directory or manifest name NAME as TASK (repeatable)")
	compatFlags := []struct {
		name, help string
		dst        *string
	}{
		{"intent-model", "task or model id behind /api/v1/classify/intent (default: the only sequence classifier without unsafe labels)", &cfg.compat.Intent},
		{"pii-model", "task or model id behind /api/v1/classify/pii (default: the only token classifier)", &cfg.compat.PII},
		{"security-model", "task or model id behind /api/v1/classify/security (default: the only classifier with unsafe labels)", &cfg.compat.Security},
		{"predict-model", "task or model id behind TEI /predict (default: the only sequence classifier)", &cfg.compat.Predict},
		{"embed-model", "task or model id behind TEI /embed (default: the only embedding model)", &cfg.compat.Embed},
	}
	for _, f := range compatFlags {
		fs.StringVar(f.dst, f.name, "", f.help)
	}
	fs.BoolVar(&cfg.followSymlinks, "follow-symlinks", false, "serve model directories and files whose symlinks lead outside --models (default: skipped)")
	fs.DurationVar(&cfg.readTimeout, "read-timeout", discovery.DefaultReadTimeout, "most time one model directory may take to read at a scan (a hung filesystem is skipped, not waited for)")
	fs.DurationVar(&cfg.loadTimeout, "load-timeout", 10*time.Minute, "most time the loading step of a reload may take (past it the reload fails and the current models keep serving)")
	defBatch := router.DefaultBatching()
	fs.DurationVar(&cfg.batching.Wait, "batch-wait", defBatch.Wait, "longest a classify request waits for others to share its core call (0 disables dynamic batching)")
	fs.IntVar(&cfg.batching.MaxTexts, "batch-max-texts", defBatch.MaxTexts, "most texts in one coalesced core call")
	fs.IntVar(&cfg.batching.MaxTokens, "batch-max-tokens", defBatch.MaxTokens, "most padded tokens (texts x the longest text's tokens, estimated at 4 bytes each) in one coalesced core call")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for in-flight requests")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg.limits.MaxBodyBytes = maxBody
	var errs []error
	if fs.NArg() != 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	if cfg.models == "" {
		errs = append(errs, errors.New("--models is required"))
	}
	if !devicePattern.MatchString(cfg.device) {
		errs = append(errs, fmt.Errorf(`--device %q: want "cpu", "cuda" or "cuda:N"`, cfg.device))
	}
	if cfg.threads < 0 {
		errs = append(errs, fmt.Errorf("--threads must not be negative, got %d", cfg.threads))
	}
	if cfg.poll < 0 {
		errs = append(errs, fmt.Errorf("--poll must not be negative, got %s", cfg.poll))
	}
	if cfg.limits.MaxBatch <= 0 || cfg.limits.MaxTextBytes <= 0 || cfg.limits.MaxBodyBytes <= 0 ||
		cfg.limits.MaxExamples <= 0 || cfg.limits.MaxLabels <= 0 {
		errs = append(errs, errors.New("--max-batch, --max-text-bytes, --max-body-bytes, --max-examples and --max-labels must be positive"))
	}
	if cfg.readTimeout <= 0 || cfg.loadTimeout <= 0 {
		errs = append(errs, errors.New("--read-timeout and --load-timeout must be positive"))
	}
	if cfg.batching.Wait < 0 || cfg.batching.MaxTexts <= 0 || cfg.batching.MaxTokens <= 0 {
		errs = append(errs, errors.New("--batch-wait must not be negative, --batch-max-texts and --batch-max-tokens must be positive"))
	}
	if cfg.shutdownTimeout <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	for name, task := range cfg.aliases {
		if !discovery.ValidName(task) || task == discovery.AllTasks {
			errs = append(errs, fmt.Errorf("--alias %s=%s: task names use letters, digits, '.', '_', '-' and %q is reserved", name, task, discovery.AllTasks))
		}
	}
	for _, f := range compatFlags {
		if *f.dst != "" && !discovery.ValidName(*f.dst) {
			errs = append(errs, fmt.Errorf("--%s %q: names use letters, digits, '.', '_' and '-'", f.name, *f.dst))
		}
	}
	var err error
	if cfg.priority, err = discovery.ParsePriority(priority); err != nil {
		errs = append(errs, fmt.Errorf("--priority: %w", err))
	}
	if err := cfg.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "lorakit-router: %v\n", err)
		return nil, err
	}
	return cfg, nil
}
