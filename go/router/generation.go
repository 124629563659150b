// Package router serves lorakit classifiers over HTTP. Models come from a discovery scan of a models root,
// are loaded by a Loader (the native one lives in router/native) and served as an immutable generation that
// a reload replaces atomically; a replaced generation closes its models after its last in-flight request.
package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/lorakit/lorakit/go/discovery"
)

// Classifier runs one loaded sequence-classification model on a batch of texts. Implementations of this and
// the other runners must be safe for concurrent use.
type Classifier interface {
	Classify(texts []string) (*Output, error)
}

// Output is a Classifier's answer for a batch of n texts.
type Output struct {
	Labels []string // label names, index order
	// Probabilities is row-major [n, len(Labels)]: the softmax of each text's logits (divided by the manifest's
	// calibration temperature).
	Probabilities []float32
	TokensIn      []int // per text, tokens before truncation
	TokensUsed    []int // per text, tokens the model saw
	// Logits, row-major like Probabilities, are the raw scores (TEI's raw_scores); nil when the runner has none.
	Logits []float32
	// Unsafe and UnsafeScore (per text) are set when the manifest declares unsafe labels, nil otherwise.
	Unsafe      []bool
	UnsafeScore []float32
	// NeedsReview (per text) is true when the top probability is below the manifest's calibration
	// review_threshold; nil reads as all false (no threshold, or a runner without calibration).
	NeedsReview []bool
}

// FewShotClassifier runs one loaded generative-classification model on one text with labelled examples in
// its prompt. labels nil means the model's labels followed by each example label not among them.
type FewShotClassifier interface {
	ClassifyFewShot(text string, examples []Example, labels []string) (*Output, error)
}

// Example is one labelled document of a few-shot prompt.
type Example struct {
	Document string `json:"document"`
	Label    string `json:"label"`
}

// EntityExtractor runs one loaded token-classification model (PII / NER) on a batch of texts.
type EntityExtractor interface {
	ExtractEntities(texts []string) (*EntityOutput, error)
}

// Entity is one span found in a text; Start and End (exclusive) count Unicode code points of the input.
type Entity struct {
	Type  string  `json:"type"`
	Start int     `json:"start"`
	End   int     `json:"end"`
	Text  string  `json:"text"`
	Score float32 `json:"score"`
}

// EntityOutput is an EntityExtractor's answer for a batch of n texts.
type EntityOutput struct {
	Entities   [][]Entity // per text, in order of appearance
	TokensIn   []int
	TokensUsed []int
}

// Embedder runs one loaded embedding model on a batch of texts.
type Embedder interface {
	Embed(texts []string) (*EmbeddingOutput, error)
}

// EmbeddingOutput is an Embedder's answer for a batch of n texts.
type EmbeddingOutput struct {
	Dim        int
	Values     []float32 // row-major [n, Dim], pooled and normalised as the model's manifest says
	TokensIn   []int
	TokensUsed []int
}

// ErrInvalidInput marks classifier errors caused by the request (answered 400, not 500).
var ErrInvalidInput = errors.New("invalid input")

// Loader turns a discovery catalog into loaded classifiers.
type Loader interface {
	Load(ctx context.Context, cat *discovery.Catalog) (*LoadedSet, error)
}

// LoadedModel is one model a Loader made servable. The runner of its manifest task is set: Classifier
// (sequence_classification), Extractor (token_classification), Embedder (embedding), or Classifier and
// FewShot (generative_classification).
type LoadedModel struct {
	Info       *discovery.Model
	Classifier Classifier
	Extractor  EntityExtractor
	Embedder   Embedder
	FewShot    FewShotClassifier
	// Dim is the vector width of an embedding model (0 for others).
	Dim int
	// GoldenVerified is true when the model reproduced its golden vectors at load.
	GoldenVerified bool
	// batcher coalesces the Classifier's requests (nil: batching off); set before the generation is served.
	batcher *batcher
}

// Kind is the model's manifest task.
func (m *LoadedModel) Kind() string { return m.Info.Manifest.Task }

// LoadFailure is a discovered model the loader refused (load error, failed parity check, ...).
type LoadFailure struct {
	Info *discovery.Model
	Err  error
}

// LoadedSet is what a Loader returns. Closers are closed, in order, once the generation retires.
type LoadedSet struct {
	Models  []LoadedModel
	Failed  []LoadFailure
	Closers []io.Closer
}

// generation is an immutable set of served models with a reference count: the server holds one reference
// while the generation is current and every request holds one while it runs.
type generation struct {
	id       uint64
	catalog  *discovery.Catalog
	byID     map[string]*LoadedModel
	byTask   map[string]*LoadedModel // serving task -> the model that wins it
	tasks    []string                // sorted serving task names
	models   []*LoadedModel          // sorted by ID
	failed   []LoadFailure
	closers  []io.Closer
	refs     atomic.Int64
	closed   chan struct{}
	closeErr error
	logger   *slog.Logger
}

func newGeneration(id uint64, cat *discovery.Catalog, set *LoadedSet, prio discovery.Priority, logger *slog.Logger) *generation {
	g := &generation{
		id: id, catalog: cat, byID: map[string]*LoadedModel{}, byTask: map[string]*LoadedModel{},
		failed: set.Failed, closers: set.Closers, closed: make(chan struct{}), logger: logger,
	}
	infos := make([]*discovery.Model, 0, len(set.Models))
	for i := range set.Models {
		m := &set.Models[i]
		g.byID[m.Info.ID] = m
		g.models = append(g.models, m)
		infos = append(infos, m.Info)
	}
	sort.Slice(g.models, func(i, j int) bool { return g.models[i].Info.ID < g.models[j].Info.ID })
	winners := discovery.Assign(infos, prio)
	for task, winner := range winners {
		g.byTask[task] = g.byID[winner.ID]
	}
	g.tasks = discovery.SortedTasks(winners)
	g.refs.Store(1) // the server's reference, dropped when a newer generation replaces this one
	return g
}

// tryAcquire takes a reference unless the generation already closed.
func (g *generation) tryAcquire() bool {
	for {
		n := g.refs.Load()
		if n <= 0 {
			return false
		}
		if g.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one closes every model of the generation.
func (g *generation) release() {
	if g.refs.Add(-1) != 0 {
		return
	}
	var errs []error
	for _, c := range g.closers {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	g.closeErr = errors.Join(errs...)
	if g.closeErr != nil {
		g.logger.Error("closing generation", "generation", g.id, "error", g.closeErr.Error())
	} else {
		g.logger.Info("generation closed", "generation", g.id, "models", len(g.models))
	}
	close(g.closed)
}

// resolve finds the model for a serving task, or else a model ID (every model stays addressable by ID).
func (g *generation) resolve(name string) *LoadedModel {
	if m, ok := g.byTask[name]; ok {
		return m
	}
	return g.byID[name]
}

// tasksOf lists the serving tasks (sorted) whose winner is of one of the manifest task kinds.
func (g *generation) tasksOf(kinds ...string) []string {
	var out []string
	for _, task := range g.tasks {
		for _, k := range kinds {
			if g.byTask[task].Kind() == k {
				out = append(out, task)
			}
		}
	}
	return out
}

// servingTask reports the task a model serves, or "" when another model wins its task.
func (g *generation) servingTask(m *LoadedModel) string {
	if g.byTask[m.Info.ServingTask] == m {
		return m.Info.ServingTask
	}
	return ""
}

// current holds the generation that new requests use.
type current struct {
	ptr atomic.Pointer[generation]
	mu  sync.Mutex // serialises swaps so each retired generation is released exactly once
}

// acquire returns the current generation with a reference taken, or nil when none is loaded. The retry
// covers the window where a swap retires the generation between Load and tryAcquire.
func (c *current) acquire() *generation {
	for attempt := 0; attempt < 1000; attempt++ {
		g := c.ptr.Load()
		if g == nil {
			return nil
		}
		if !g.tryAcquire() {
			continue
		}
		if c.ptr.Load() == g {
			return g
		}
		g.release() // replaced meanwhile: prefer the newer one
	}
	return nil
}

// swap installs next (nil retires the current one) and drops the server's reference to the previous one.
func (c *current) swap(next *generation) *generation {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.ptr.Swap(next)
	if prev != nil {
		prev.release()
	}
	return prev
}
