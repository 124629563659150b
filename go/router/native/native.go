// Package native loads a discovery catalog through the lorakit CGO binding: each base once with all its
// adapters (lorakit.LoadBase + AddAdapter), adapter-less models merged (lorakit.Load(dir, true, ...)), and,
// when asked, refuses any model that does not reproduce its golden vectors. Architectures tells discovery
// which encoder families the core serves.
package native

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/router"
)

// Architectures are the encoder families the native core serves, for discovery.Options.Architectures.
func Architectures() ([]discovery.Architecture, error) {
	archs, err := lorakit.Architectures()
	if err != nil {
		return nil, err
	}
	out := make([]discovery.Architecture, len(archs))
	for i, a := range archs {
		out[i] = discovery.Architecture{ModelType: a.ModelType, Aliases: a.Aliases}
	}
	return out, nil
}

// Loader implements router.Loader with the native core.
type Loader struct {
	Options lorakit.Options
	// VerifyGolden recomputes golden.safetensors of every model at load and refuses the ones that differ
	// (or have none to check).
	VerifyGolden bool
	Logger       *slog.Logger
}

// Load loads every model of the catalog. Per-model problems become LoadFailures; only a cancelled context
// is an error, and then everything loaded so far is closed.
func (l *Loader) Load(ctx context.Context, cat *discovery.Catalog) (*router.LoadedSet, error) {
	logger := l.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	run := &loadRun{loader: l, logger: logger, set: &router.LoadedSet{}}
	groups, merged := cat.Plan()
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return nil, run.abort(err)
		}
		run.loadGroup(g)
	}
	for _, m := range merged {
		if err := ctx.Err(); err != nil {
			return nil, run.abort(err)
		}
		run.loadMerged(m)
	}
	// Last closer: once the generation's models are closed, return their freed memory to the system.
	run.set.Closers = append(run.set.Closers, heapTrimmer{})
	return run.set, nil
}

type heapTrimmer struct{}

func (heapTrimmer) Close() error {
	trimHeap()
	return nil
}

type loadRun struct {
	loader *Loader
	logger *slog.Logger
	set    *router.LoadedSet
}

func (r *loadRun) abort(err error) error {
	for _, c := range r.set.Closers {
		c.Close()
	}
	return fmt.Errorf("loading cancelled: %w", err)
}

func (r *loadRun) fail(m *discovery.Model, err error) {
	r.set.Failed = append(r.set.Failed, router.LoadFailure{Info: m, Err: err})
}

// served adds task adapter ("" = the default) of model under the runner of its kind; it refuses a task whose
// loaded kind differs from the manifest discovery read.
func (r *loadRun) served(m *discovery.Model, model *lorakit.Model, adapter string, verified bool) error {
	info, err := model.TaskInfo(adapter)
	if err != nil {
		return fmt.Errorf("reading task info: %w", err)
	}
	if info.Task != m.Manifest.Task {
		return fmt.Errorf("the core loaded a %s task, the manifest says %s", info.Task, m.Manifest.Task)
	}
	run := &runner{model: model, adapter: adapter}
	loaded := router.LoadedModel{Info: m, Dim: info.Dim, GoldenVerified: verified}
	switch info.Task {
	case lorakit.TaskSequenceClassification:
		loaded.Classifier = run
	case lorakit.TaskTokenClassification:
		loaded.Extractor = run
	case lorakit.TaskEmbedding:
		loaded.Embedder = run
	case lorakit.TaskGenerativeClassification:
		loaded.Classifier, loaded.FewShot = run, run
	default:
		return fmt.Errorf("%w: task %s has no runner", lorakit.ErrUnsupported, info.Task)
	}
	r.set.Models = append(r.set.Models, loaded)
	r.logger.Info("model loaded", "id", m.ID, "serving_task", m.ServingTask, "kind", info.Task,
		"mode", string(m.Mode), "golden_verified", verified)
	return nil
}

// loadGroup loads one base and adds each adapter under its model ID. When the base itself cannot load,
// members that also ship merged weights are served merged instead.
func (r *loadRun) loadGroup(g discovery.BaseGroup) {
	base, err := lorakit.LoadBase(g.Path, r.loader.Options)
	if err != nil {
		// Only a base whose files are unusable is worth bypassing; a device or option error would fail the
		// merged load the same way.
		fileProblem := errors.Is(err, lorakit.ErrIO) || errors.Is(err, lorakit.ErrFormat)
		for _, m := range g.Models {
			if !fileProblem || !m.Manifest.Lists("model.safetensors") {
				r.fail(m, fmt.Errorf("loading base %s: %w", g.Path, err))
				continue
			}
			fallback := *m
			fallback.Mode, fallback.BasePath = discovery.ModeMerged, ""
			fallback.Note = fmt.Sprintf("serving merged weights: base %s failed to load: %v", g.Path, err)
			r.loadMerged(&fallback)
		}
		return
	}
	added := 0
	for _, m := range g.Models {
		if err := base.AddAdapter(m.ID, m.Dir); err != nil {
			r.fail(m, fmt.Errorf("adding adapter: %w", err))
			continue
		}
		verified, err := r.verify(m, func(gold *lorakit.Golden) (*lorakit.ParityReport, error) {
			return gold.CheckAdapter(base, m.ID)
		})
		if err == nil {
			err = r.served(m, base, m.ID, verified)
		}
		if err != nil {
			base.RemoveAdapter(m.ID)
			r.fail(m, err)
			continue
		}
		added++
	}
	if added == 0 {
		base.Close()
		return
	}
	r.set.Closers = append(r.set.Closers, base)
	r.logger.Info("base loaded", "path", g.Path, "weights_sha256", g.WeightsSHA256, "adapters", added)
}

func (r *loadRun) loadMerged(m *discovery.Model) {
	model, err := lorakit.Load(m.Dir, true, r.loader.Options)
	if err != nil {
		r.fail(m, fmt.Errorf("loading merged weights: %w", err))
		return
	}
	verified, err := r.verify(m, func(gold *lorakit.Golden) (*lorakit.ParityReport, error) {
		return gold.CheckModel(model)
	})
	if err == nil {
		err = r.served(m, model, "", verified)
	}
	if err != nil {
		model.Close()
		r.fail(m, err)
		return
	}
	r.set.Closers = append(r.set.Closers, model)
}

// verify runs the parity check when enabled; it returns whether the model was verified, or why it is refused.
func (r *loadRun) verify(m *discovery.Model, check func(*lorakit.Golden) (*lorakit.ParityReport, error)) (bool, error) {
	if !r.loader.VerifyGolden {
		return false, nil
	}
	if !m.HasGolden() {
		return false, fmt.Errorf("golden check requested but %s lists no %s", discovery.ManifestFile, discovery.GoldenFile)
	}
	gold, err := lorakit.ReadGolden(filepath.Join(m.Dir, discovery.GoldenFile))
	if err != nil {
		return false, fmt.Errorf("reading golden vectors: %w", err)
	}
	report, err := check(gold)
	if err != nil {
		return false, fmt.Errorf("recomputing golden vectors: %w", err)
	}
	if !report.OK {
		return false, fmt.Errorf("golden parity failed: %s", Describe(report))
	}
	return true, nil
}

// Describe summarises the failing checks of a parity report in one line.
func Describe(report *lorakit.ParityReport) string {
	var parts []string
	for _, c := range report.Checks {
		if c.OK {
			continue
		}
		if c.Detail != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", c.Output, c.Detail))
			continue
		}
		at := fmt.Sprintf("row %d", c.Row)
		if c.Col >= 0 {
			at = fmt.Sprintf("[%d,%d]", c.Row, c.Col)
		}
		parts = append(parts, fmt.Sprintf("%s: %d mismatches, max |diff| %.3g > %.3g at %s (expected %.6g, got %.6g)",
			c.Output, c.Mismatches, c.MaxAbsDiff, c.Tolerance, at, c.Expected, c.Got))
	}
	if len(parts) == 0 {
		return "ok"
	}
	return strings.Join(parts, "; ")
}

// runner serves one task of a model: a named adapter of a shared base, or ("") a merged model's own task.
type runner struct {
	model   *lorakit.Model
	adapter string
}

func (c *runner) Classify(texts []string) (*router.Output, error) {
	res, err := c.model.ClassifyWith(c.adapter, texts)
	if err != nil {
		return nil, inputError(err)
	}
	return &router.Output{Labels: res.Labels, Probabilities: res.Probabilities(), Logits: res.Logits, TokensIn: res.TokensIn,
		TokensUsed: res.TokensUsed, Unsafe: res.Unsafe, UnsafeScore: res.UnsafeScore, NeedsReview: res.NeedsReview}, nil
}

func (c *runner) ClassifyFewShot(text string, examples []router.Example, labels []string) (*router.Output, error) {
	shots := make([]lorakit.Example, len(examples))
	for i, ex := range examples {
		shots[i] = lorakit.Example(ex)
	}
	res, err := c.model.ClassifyFewShotWith(c.adapter, text, shots, labels)
	if err != nil {
		return nil, inputError(err)
	}
	return &router.Output{Labels: res.Labels, Probabilities: res.Probabilities(), Logits: res.Logits, TokensIn: res.TokensIn,
		TokensUsed: res.TokensUsed}, nil
}

func (c *runner) ExtractEntities(texts []string) (*router.EntityOutput, error) {
	res, err := c.model.ExtractEntitiesWith(c.adapter, texts)
	if err != nil {
		return nil, inputError(err)
	}
	out := &router.EntityOutput{Entities: make([][]router.Entity, res.NumTexts), TokensIn: res.TokensIn,
		TokensUsed: res.TokensUsed}
	for i, row := range res.Entities {
		out.Entities[i] = make([]router.Entity, len(row))
		for j, e := range row {
			out.Entities[i][j] = router.Entity(e)
		}
	}
	return out, nil
}

func (c *runner) Embed(texts []string) (*router.EmbeddingOutput, error) {
	res, err := c.model.EmbedWith(c.adapter, texts)
	if err != nil {
		return nil, inputError(err)
	}
	return &router.EmbeddingOutput{Dim: res.Dim, Values: res.Values, TokensIn: res.TokensIn,
		TokensUsed: res.TokensUsed}, nil
}

// inputError marks binding input errors as router.ErrInvalidInput so they are answered 400.
func inputError(err error) error {
	if errors.Is(err, lorakit.ErrInput) {
		return fmt.Errorf("%w: %w", router.ErrInvalidInput, err)
	}
	return err
}
