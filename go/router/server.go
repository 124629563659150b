package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
)

// Limits bound what one request may ask for; exceeding one is a 413 JSON error.
type Limits struct {
	MaxBatch     int   // texts per batch request
	MaxTextBytes int   // bytes per text (UTF-8)
	MaxBodyBytes int64 // bytes per request body
	// MaxExamples bounds the labelled examples of one few-shot request: each one lengthens the prompt.
	MaxExamples int
	// MaxLabels bounds the labels of one few-shot request: each one is a continuation scored on the prompt.
	MaxLabels int
}

// DefaultLimits suit a CPU deployment of small encoders.
func DefaultLimits() Limits {
	return Limits{MaxBatch: 256, MaxTextBytes: 16 << 10, MaxBodyBytes: 4 << 20, MaxExamples: 32, MaxLabels: 64}
}

func (l Limits) validate() error {
	if l.MaxBatch <= 0 || l.MaxTextBytes <= 0 || l.MaxBodyBytes <= 0 || l.MaxExamples <= 0 || l.MaxLabels <= 0 {
		return fmt.Errorf("limits must be positive: %+v", l)
	}
	return nil
}

// Config configures a Server.
type Config struct {
	ModelsRoot string
	Discovery  discovery.Options // its Logger defaults to Logger
	// Priority defaults to discovery.DefaultPriority(Discovery.Architectures).
	Priority discovery.Priority
	Loader   Loader
	Limits   Limits
	Logger   *slog.Logger
	// Compat names the model behind each compatibility route; empty fields pick a default (compat.go).
	Compat CompatModels
	// LoadTimeout bounds the loading step of a reload (0 = unbounded); past it the reload fails with
	// ErrLoadTimeout and the current generation keeps serving.
	LoadTimeout time.Duration
	// Batching coalesces concurrent classify requests per model (batcher.go); its zero value turns it off.
	// With Wait set, zero limits take DefaultBatching's.
	Batching Batching
}

// Server owns the current generation of models and the HTTP API over it.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	metrics  *metrics
	cur      current
	reloadMu sync.Mutex // one load at a time
	nextID   uint64
	lastFP   string // manifest fingerprint of the last load attempt
	loading  atomic.Bool
}

// New validates the configuration; call Reload to load the first generation.
func New(cfg Config) (*Server, error) {
	if cfg.ModelsRoot == "" {
		return nil, errors.New("router: models root is required")
	}
	if cfg.Loader == nil {
		return nil, errors.New("router: a loader is required")
	}
	if cfg.Priority == nil {
		cfg.Priority = discovery.DefaultPriority(cfg.Discovery.Architectures)
	}
	def := DefaultLimits()
	if cfg.Limits.MaxBatch == 0 {
		cfg.Limits.MaxBatch = def.MaxBatch
	}
	if cfg.Limits.MaxTextBytes == 0 {
		cfg.Limits.MaxTextBytes = def.MaxTextBytes
	}
	if cfg.Limits.MaxBodyBytes == 0 {
		cfg.Limits.MaxBodyBytes = def.MaxBodyBytes
	}
	if cfg.Limits.MaxExamples == 0 {
		cfg.Limits.MaxExamples = def.MaxExamples
	}
	if cfg.Limits.MaxLabels == 0 {
		cfg.Limits.MaxLabels = def.MaxLabels
	}
	if err := cfg.Limits.validate(); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if err := cfg.Batching.validate(); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if defBatch := DefaultBatching(); cfg.Batching.Wait > 0 {
		if cfg.Batching.MaxTexts == 0 {
			cfg.Batching.MaxTexts = defBatch.MaxTexts
		}
		if cfg.Batching.MaxTokens == 0 {
			cfg.Batching.MaxTokens = defBatch.MaxTokens
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	if cfg.Discovery.Logger == nil {
		cfg.Discovery.Logger = cfg.Logger
	}
	if _, err := openAPIDocument(); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	logger := slog.New(requestIDHandler{cfg.Logger.Handler()})
	return &Server{cfg: cfg, logger: logger, metrics: newMetrics()}, nil
}

// Reload scans the models root, loads a complete new generation and swaps it in atomically. Requests keep
// using the old generation until the swap; it closes after its last in-flight request. On error (root
// unreadable, loader failure, every discovered model refused) the current generation keeps serving. Models
// that are invalid or fail to load are skipped and reported by /api/v1/models; they do not fail the reload.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.loading.Store(true)
	defer s.loading.Store(false)
	start := time.Now()
	g, err := s.build(ctx)
	s.metrics.observeReload(err == nil)
	if err != nil {
		s.logger.Error("reload failed; keeping the current generation", "error", err.Error())
		return err
	}
	prev := s.cur.swap(g)
	s.metrics.setGeneration(prev, g)
	s.logger.Info("generation loaded", "generation", g.id, "models", len(g.models), "tasks", g.tasks,
		"failed", len(g.failed), "skipped", len(g.catalog.Skipped), "duration_ms", msSince(start))
	return nil
}

func (s *Server) build(ctx context.Context) (*generation, error) {
	// Fingerprint before scanning: a change during the scan then triggers one more reload, never none.
	// It is kept even when the load fails, so polling retries only after the manifests change again.
	fp, err := discovery.Fingerprint(s.cfg.ModelsRoot, s.cfg.Discovery.ReadTimeout)
	if err != nil {
		return nil, err
	}
	s.lastFP = fp
	cat, err := discovery.Scan(s.cfg.ModelsRoot, s.cfg.Discovery)
	if err != nil {
		return nil, err
	}
	set, err := s.loadWithin(ctx, cat)
	if err != nil {
		return nil, fmt.Errorf("loading models: %w", err)
	}
	for _, f := range set.Failed {
		s.logger.Warn("model not served", "id", f.Info.ID, "dir", f.Info.Dir, "reason", f.Err.Error())
	}
	if len(set.Models) == 0 && len(set.Failed) > 0 {
		// Every model failing at once points at the deployment (device, memory), not at the models.
		for _, c := range set.Closers {
			c.Close()
		}
		return nil, fmt.Errorf("none of the %d discovered models loaded; first error: %w", len(set.Failed), set.Failed[0].Err)
	}
	s.nextID++
	g := newGeneration(s.nextID, cat, set, s.cfg.Priority, s.logger)
	s.startBatching(g)
	return g, nil
}

// Poll rescans every interval while ctx lives and reloads when the manifests under the root changed.
func (s *Server) Poll(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp, err := discovery.Fingerprint(s.cfg.ModelsRoot, s.cfg.Discovery.ReadTimeout)
		if err != nil {
			s.logger.Warn("poll: cannot read the models root", "error", err.Error())
			continue
		}
		s.reloadMu.Lock()
		changed := fp != s.lastFP
		s.reloadMu.Unlock()
		if changed {
			s.logger.Info("poll: manifests changed, reloading")
			_ = s.Reload(ctx) // logged and counted by Reload
		}
	}
}

// Close retires the current generation; its models close once in-flight requests finish.
// It returns a channel closed when that has happened (already closed when nothing was loaded).
func (s *Server) Close() <-chan struct{} {
	prev := s.cur.swap(nil)
	if prev == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return prev.closed
}

// Generation returns the sequence number of the current generation (0 before the first load).
func (s *Server) Generation() uint64 {
	g := s.cur.acquire()
	if g == nil {
		return 0
	}
	defer g.release()
	return g.id
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }
