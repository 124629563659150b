package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Mode is how a model is loaded.
type Mode string

const (
	// ModeMerged loads model.safetensors (base + scale * B @ A, head included) on its own.
	ModeMerged Mode = "merged"
	// ModeAdapter applies the PEFT adapter at runtime on a base shared with other adapters.
	ModeAdapter Mode = "adapter"
)

// GoldenFile holds the parity vectors of a model directory (docs/FORMAT.md).
const GoldenFile = "golden.safetensors"

// baseWeightsFile is the file of an HF base directory whose sha256 is base.weights_sha256.
const baseWeightsFile = "model.safetensors"

// AllTasks is the reserved serving name that means "every serving task".
const AllTasks = "all"

// Model is one valid model directory.
type Model struct {
	// ID is the directory name under the models root: unique, displayed and addressable, never interpreted.
	ID string
	// Dir is the absolute model directory.
	Dir      string
	Manifest Manifest
	Mode     Mode
	// BasePath is the absolute base directory (ModeAdapter only).
	BasePath string
	// ServingTask is the name requests route by: the manifest name unless an alias overrides it.
	ServingTask string
	// Note explains a mode that differs from the manifest's own (e.g. merged fallback when the base is gone).
	Note string
}

// HasGolden reports whether the directory lists golden.safetensors (checked by VerifyFiles).
func (m *Model) HasGolden() bool { return m.Manifest.Lists(GoldenFile) }

// BaseKey is the sha256 of the base weights for adapter models, "" for merged ones.
func (m *Model) BaseKey() string {
	if m.Mode != ModeAdapter {
		return ""
	}
	return m.Manifest.Base.WeightsSHA256
}

// Skipped is a directory under the root that will not be served, and why.
type Skipped struct {
	ID  string
	Dir string
	Err error
}

// Options configure Scan.
type Options struct {
	// Tasks are the manifest task kinds to accept; empty means ServedTasks.
	Tasks []string
	// Aliases map a model ID or a manifest name to the serving task name it should answer to.
	Aliases map[string]string
	// Architectures are the encoder families the loader serves (the router passes the native core's list,
	// lorakit.Architectures); a manifest naming another is skipped with ErrUnsupported. Empty accepts every
	// architecture, leaving refusals to the loader.
	Architectures []Architecture
	// ResolveBase finds the base directory of an adapter model directory (the router passes the native core's
	// rule, lorakit.ResolveBase, which also searches LORAKIT_BASES); nil uses the recorded base.path only.
	ResolveBase func(modelDir string) (string, error)
	// Logger receives one record per discovered or skipped directory; nil discards.
	Logger *slog.Logger
	// FollowSymlinks serves model directories and files whose symlinks lead outside the root; by default
	// they are skipped with ErrUnsafePath (a base directory named by an adapter may live anywhere).
	FollowSymlinks bool
	// ReadTimeout bounds the reads of each model directory (0 = unbounded); one that takes longer is
	// skipped with ErrTimeout, so a hung filesystem cannot stall a reload forever.
	ReadTimeout time.Duration
}

// Architecture is one encoder family a loader serves: its config.json model_type and the other model_type
// values it accepts for it.
type Architecture struct {
	ModelType string
	Aliases   []string
}

// Names are the model_type values the architecture accepts, its own first.
func (a Architecture) Names() []string { return append([]string{a.ModelType}, a.Aliases...) }

func (o *Options) validate() error {
	for key, task := range o.Aliases {
		if key == "" {
			return errors.New("alias with an empty model name")
		}
		if !ValidName(task) || task == AllTasks {
			return fmt.Errorf("alias %s=%s: task name must match %s and must not be %q", key, task, namePattern, AllTasks)
		}
	}
	for _, t := range o.Tasks {
		if !contains(KnownTasks, t) {
			return fmt.Errorf("unknown task kind %q (known: %s)", t, strings.Join(KnownTasks, ", "))
		}
	}
	seen := map[string]bool{}
	for _, a := range o.Architectures {
		for _, name := range a.Names() {
			if !archPattern.MatchString(name) || seen[name] {
				return fmt.Errorf("architecture %q: not a lower-case identifier, or listed twice", name)
			}
			seen[name] = true
		}
	}
	return nil
}

// served lists the accepted model_type values in order; nil when every architecture is accepted.
func (o *Options) served() []string {
	var names []string
	for _, a := range o.Architectures {
		names = append(names, a.Names()...)
	}
	return names
}

// Catalog is the outcome of one scan.
type Catalog struct {
	Root    string
	Models  []*Model  // valid models, sorted by ID
	Skipped []Skipped // invalid or ignored directories, sorted by ID
}

// Model returns the model with the given ID, or nil.
func (c *Catalog) Model(id string) *Model {
	for _, m := range c.Models {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// Scan inspects every immediate subdirectory of root. It fails only when root itself cannot be listed or the
// options are invalid; a bad model directory becomes a Skipped entry with the reason logged.
func Scan(root string, opts Options) (*Catalog, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tasks := opts.Tasks
	if len(tasks) == 0 {
		tasks = ServedTasks
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("models root %q: %w", root, err)
	}
	var realRoot string
	entries, err := bounded(opts.ReadTimeout, "listing the models root", func() ([]os.DirEntry, error) {
		var err error
		if realRoot, err = filepath.EvalSymlinks(abs); err != nil {
			return nil, err
		}
		return os.ReadDir(abs)
	})
	if err != nil {
		return nil, fmt.Errorf("models root %q: %w", root, err)
	}
	s := &scanner{opts: opts, tasks: tasks, archs: opts.served(), logger: logger, realRoot: realRoot,
		baseSums: map[string]baseCheck{}}
	cat := &Catalog{Root: abs}
	for _, e := range entries {
		dir := filepath.Join(abs, e.Name())
		m, err := bounded(opts.ReadTimeout, "reading "+dir, func() (*Model, error) { return s.inspect(e.Name(), dir) })
		if errors.Is(err, errNotDir) {
			logger.Debug("not a directory, ignored", "path", dir)
			continue
		}
		if err != nil {
			cat.Skipped = append(cat.Skipped, Skipped{ID: e.Name(), Dir: dir, Err: err})
			level := slog.LevelWarn
			if errors.Is(err, errNotModel) {
				level = slog.LevelInfo
			}
			logger.Log(context.Background(), level, "model directory skipped", "dir", dir, "reason", err.Error())
			continue
		}
		logger.Info("model discovered", "id", m.ID, "name", m.Manifest.Name, "serving_task", m.ServingTask,
			"task", m.Manifest.Task, "architecture", m.Manifest.Architecture, "mode", string(m.Mode),
			"base", m.BasePath, "note", m.Note)
		cat.Models = append(cat.Models, m)
	}
	sort.Slice(cat.Models, func(i, j int) bool { return cat.Models[i].ID < cat.Models[j].ID })
	sort.Slice(cat.Skipped, func(i, j int) bool { return cat.Skipped[i].ID < cat.Skipped[j].ID })
	return cat, nil
}

// errNotModel marks directories that are not model directories at all (hidden, temporary, no manifest).
var errNotModel = errors.New("not a lorakit model directory")

// errNotDir marks root entries that are not directories (ignored, not listed as skipped).
var errNotDir = errors.New("not a directory")

type baseCheck struct {
	sum string
	err error
}

type scanner struct {
	opts     Options
	tasks    []string
	archs    []string // accepted model_type values; nil accepts any
	logger   *slog.Logger
	realRoot string // the root with its symlinks resolved
	// baseSums maps a base directory to the sha256 of its weights, hashed once per scan; locked because an
	// inspection abandoned after ReadTimeout may still be running.
	mu       sync.Mutex
	baseSums map[string]baseCheck
}

// ignoredName says why a directory name is never a model (hidden, or an export still being written).
func ignoredName(name string) string {
	switch {
	case strings.HasPrefix(name, "."):
		return "hidden directory"
	case strings.Contains(name, ".tmp-"):
		return "temporary directory of an export in progress"
	}
	return ""
}

func (s *scanner) inspect(id, dir string) (*Model, error) {
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return nil, errNotDir
	}
	if why := ignoredName(id); why != "" {
		return nil, fmt.Errorf("%w: %s", errNotModel, why)
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s", errNotModel, ManifestFile)
	}
	if err := insideRoot(s.realRoot, filepath.Join(dir, ManifestFile), s.opts.FollowSymlinks); err != nil {
		return nil, err
	}
	man, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	for _, rel := range man.sortedFiles() {
		if checkRelPath(rel) != nil {
			continue // VerifyFiles reports it
		}
		if err := insideRoot(s.realRoot, filepath.Join(dir, filepath.FromSlash(rel)), s.opts.FollowSymlinks); err != nil {
			return nil, fmt.Errorf("%s (listed in %s): %w", rel, ManifestFile, err)
		}
	}
	if !contains(s.tasks, man.Task) {
		return nil, fmt.Errorf("%w: task %q is not served (serving %s)", ErrUnsupported, man.Task, strings.Join(s.tasks, ", "))
	}
	if s.archs != nil && !contains(s.archs, man.Architecture) {
		return nil, fmt.Errorf("%w: architecture %q is not served (serving %s)", ErrUnsupported, man.Architecture,
			strings.Join(s.archs, ", "))
	}
	if err := VerifyFiles(dir, man); err != nil {
		return nil, err
	}
	m := &Model{ID: id, Dir: dir, Manifest: *man, Mode: ModeMerged, ServingTask: s.servingTask(id, man.Name)}
	if m.ServingTask == AllTasks {
		return nil, fmt.Errorf("%w: serving task %q is reserved; configure an alias for this model", ErrManifest, AllTasks)
	}
	if man.Adapter == nil {
		return m, nil
	}
	basePath, err := s.resolveBase(dir, man)
	if err == nil {
		err = s.checkBase(basePath, man.Base.WeightsSHA256)
	}
	if err != nil {
		if man.Lists(baseWeightsFile) {
			m.Note = fmt.Sprintf("serving merged weights: %v", err)
			return m, nil
		}
		return nil, err
	}
	m.Mode = ModeAdapter
	m.BasePath = basePath
	return m, nil
}

func (s *scanner) servingTask(id, name string) string {
	if t, ok := s.opts.Aliases[id]; ok {
		return t
	}
	if t, ok := s.opts.Aliases[name]; ok {
		return t
	}
	return name
}

// resolveBase is the base directory of an adapter model: by the configured rule, else the recorded path.
func (s *scanner) resolveBase(dir string, man *Manifest) (string, error) {
	if s.opts.ResolveBase != nil {
		p, err := s.opts.ResolveBase(dir)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrBase, err)
		}
		return filepath.Clean(p), nil
	}
	p := man.Base.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, filepath.FromSlash(p))
	}
	return filepath.Clean(p), nil
}

// checkBase verifies that the base directory holds the weights the adapter was trained on.
func (s *scanner) checkBase(basePath, want string) error {
	s.mu.Lock()
	c, ok := s.baseSums[basePath]
	s.mu.Unlock()
	if !ok {
		c.sum, c.err = FileSHA256(filepath.Join(basePath, baseWeightsFile))
		s.mu.Lock()
		s.baseSums[basePath] = c
		s.mu.Unlock()
	}
	if c.err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBase, basePath, c.err)
	}
	if c.sum != want {
		return fmt.Errorf("%w: %s/%s has sha256 %s, the adapter was trained on %s", ErrBase, basePath, baseWeightsFile, c.sum, want)
	}
	return nil
}
