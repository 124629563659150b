package router

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"
)

// Batching coalesces concurrent classify requests for one model into one core call. A request waits at most
// Wait for others to join (counted from its arrival, or from the end of the model's previous call when that
// is later); a call holds at most MaxTexts texts and MaxTokens padded tokens (texts x the longest text's
// tokens, estimated from its bytes). A request is never split across calls; one over the limits runs alone.
type Batching struct {
	Wait      time.Duration // 0 disables coalescing: every request makes its own core call
	MaxTexts  int
	MaxTokens int
}

// DefaultBatching suits small encoders on a few CPU cores: 32 texts of 128 tokens fill a call.
func DefaultBatching() Batching {
	return Batching{Wait: 2 * time.Millisecond, MaxTexts: 32, MaxTokens: 4096}
}

func (b Batching) validate() error {
	if b.Wait < 0 || b.MaxTexts < 0 || b.MaxTokens < 0 {
		return fmt.Errorf("batching settings must not be negative: %+v", b)
	}
	return nil
}

// errRetired answers a queued request whose generation closed before its call could start.
var errRetired = errors.New("the model was retired before the queued request ran")

// errPanicked answers the requests of a call whose runner panicked (the panic is logged with its stack).
var errPanicked = errors.New("the model call panicked")

// pending is one request waiting in a batcher's queue.
type pending struct {
	texts   []string
	longest int // tokens of its longest text
	queued  time.Time
	done    chan batchAnswer // buffered: the worker never waits for a caller that left
}

type batchAnswer struct {
	out *Output
	ms  float64 // this request's share of the call's measured time
	err error
}

// batcher queues the classify requests of one model of one generation. A worker goroutine exists while the
// queue is not empty; it makes one core call at a time, so coalesced calls never compete for the threads.
type batcher struct {
	s     *Server
	g     *generation
	m     *LoadedModel
	cfg   Batching
	wake  chan struct{}
	mu    sync.Mutex
	queue []*pending
	busy  bool // a worker is running
}

// startBatching gives every classifier of g a batcher when coalescing is enabled.
func (s *Server) startBatching(g *generation) {
	if s.cfg.Batching.Wait <= 0 {
		return
	}
	for _, m := range g.models {
		if m.Classifier != nil {
			m.batcher = &batcher{s: s, g: g, m: m, cfg: s.cfg.Batching, wake: make(chan struct{}, 1)}
		}
	}
}

// classifyCall runs m's classifier on texts, coalesced with other requests when batching is on. It returns
// the output for texts and this request's share of the measured core time.
func (s *Server) classifyCall(ctx context.Context, m *LoadedModel, texts []string) (*Output, float64, error) {
	if m.batcher != nil {
		return m.batcher.classify(ctx, texts)
	}
	start := time.Now()
	out, err := m.Classifier.Classify(texts)
	s.metrics.observeInference(m.Info.ID, time.Since(start))
	s.metrics.observeBatch(m.Info.ID, len(texts))
	return out, msSince(start), err
}

func (b *batcher) classify(ctx context.Context, texts []string) (*Output, float64, error) {
	p := &pending{texts: texts, longest: b.longest(texts), queued: time.Now(), done: make(chan batchAnswer, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	b.s.metrics.queueDepth.Inc()
	if !b.busy {
		b.busy = true
		go b.work()
	} else {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	b.mu.Unlock()
	select {
	case a := <-p.done:
		return a.out, a.ms, a.err
	case <-ctx.Done():
		b.mu.Lock()
		for i, q := range b.queue {
			if q == p {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				b.s.metrics.queueDepth.Dec()
				break
			}
		}
		b.mu.Unlock()
		// Already in a call: that call goes on for the others and this answer is dropped.
		return nil, 0, ctx.Err()
	}
}

// longest estimates the tokens of the longest text: about 4 bytes a token plus 2 special tokens, capped at
// the manifest's max_seq_len. Asking the core's tokenizer instead would queue the count behind the running
// call on the shared compute pool, and the late arrivals would split every call in two.
func (b *batcher) longest(texts []string) int {
	best := 1
	for _, t := range texts {
		best = max(best, len(t)/4+2)
	}
	if limit := b.m.Info.Manifest.MaxSeqLen; limit > 0 {
		best = min(best, limit)
	}
	return best
}

// work serves the queue until it is empty: it waits until the queue fills a call or cfg.Wait has passed
// since the oldest request arrived and since the previous call ended, takes the call's requests and runs them.
func (b *batcher) work() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var ended time.Time // when this worker's last call ended
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.busy = false
			b.mu.Unlock()
			return
		}
		n, full := b.fit()
		// Counting the wait from the last call's end too lets the clients it just answered rejoin: without it,
		// closed-loop clients split into two half-full calls that alternate forever.
		from := b.queue[0].queued
		if ended.After(from) {
			from = ended
		}
		wait := time.Until(from.Add(b.cfg.Wait))
		if !full && wait > 0 {
			b.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-b.wake:
				timer.Stop()
			}
			continue
		}
		call := append([]*pending(nil), b.queue[:n]...)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.s.metrics.queueDepth.Sub(float64(n))
		b.mu.Unlock()
		b.run(call)
		ended = time.Now()
	}
}

// fit counts the queued requests (oldest first, none skipped) that one call takes, and whether a limit
// stopped it. The first request is always taken, even one over the limits.
func (b *batcher) fit() (int, bool) {
	texts, longest := 0, 0
	for i, p := range b.queue {
		t, l := texts+len(p.texts), max(longest, p.longest)
		if i > 0 && (t > b.cfg.MaxTexts || t*l > b.cfg.MaxTokens) {
			return i, true
		}
		texts, longest = t, l
	}
	return len(b.queue), texts >= b.cfg.MaxTexts || texts*longest >= b.cfg.MaxTokens
}

// run makes one core call for the requests of call and answers each. When a coalesced call fails, each
// request is retried alone, so one bad text (an input error, a non-finite output) fails only its request.
func (b *batcher) run(call []*pending) {
	defer func() { // a bug here must not take the router down with it, nor leave a caller waiting
		if p := recover(); p != nil {
			b.s.logger.Error("panic in the batcher", "model", b.m.Info.ID, "panic", fmt.Sprint(p),
				"stack", string(debug.Stack()))
			for _, q := range call {
				select {
				case q.done <- batchAnswer{err: errPanicked}:
				default: // already answered
				}
			}
		}
	}()
	start := time.Now()
	for _, p := range call {
		b.s.metrics.observeWait(b.m.Info.ID, start.Sub(p.queued))
	}
	if !b.g.tryAcquire() { // every caller left and the generation closed: nobody to answer
		for _, p := range call {
			p.done <- batchAnswer{err: errRetired}
		}
		return
	}
	defer b.g.release()
	var texts []string
	for _, p := range call {
		texts = append(texts, p.texts...)
	}
	out, ms, err := b.call(texts)
	if err == nil && len(call) == 1 {
		call[0].done <- batchAnswer{out: out, ms: ms}
		return
	}
	if err == nil {
		parts, ok := split(out, call, ms)
		if ok {
			for i, p := range call {
				p.done <- parts[i]
			}
			return
		}
	}
	if len(call) == 1 {
		call[0].done <- batchAnswer{out: out, ms: ms, err: err}
		return
	}
	for _, p := range call {
		out, ms, err := b.call(p.texts)
		p.done <- batchAnswer{out: out, ms: ms, err: err}
	}
}

// call is one core call with its metrics; a runner panic becomes errPanicked, never a crash.
func (b *batcher) call(texts []string) (out *Output, ms float64, err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			b.s.logger.Error("panic in a model call", "model", b.m.Info.ID, "panic", fmt.Sprint(p),
				"stack", string(debug.Stack()))
			out, err = nil, errPanicked
		}
		b.s.metrics.observeInference(b.m.Info.ID, time.Since(start))
		b.s.metrics.observeBatch(b.m.Info.ID, len(texts))
		ms = msSince(start)
	}()
	out, err = b.m.Classifier.Classify(texts)
	return out, 0, err // ms is set by the deferred function
}

// split cuts a coalesced output into one per request, each with its share of the time by tokens used. It
// reports false when the output's shape does not match the texts (then every request is retried alone).
func split(out *Output, call []*pending, ms float64) ([]batchAnswer, bool) {
	n := 0
	for _, p := range call {
		n += len(p.texts)
	}
	if out == nil {
		return nil, false
	}
	k := len(out.Labels)
	if k == 0 || len(out.Probabilities) != n*k || len(out.TokensIn) != n || len(out.TokensUsed) != n ||
		(out.Logits != nil && len(out.Logits) != n*k) ||
		(out.Unsafe != nil && (len(out.Unsafe) != n || len(out.UnsafeScore) != n)) ||
		(out.NeedsReview != nil && len(out.NeedsReview) != n) {
		return nil, false
	}
	total := sum(out.TokensUsed)
	answers := make([]batchAnswer, len(call))
	at := 0
	for i, p := range call {
		lo, hi := at, at+len(p.texts)
		part := &Output{Labels: out.Labels, Probabilities: out.Probabilities[lo*k : hi*k],
			TokensIn: out.TokensIn[lo:hi], TokensUsed: out.TokensUsed[lo:hi]}
		if out.Logits != nil {
			part.Logits = out.Logits[lo*k : hi*k]
		}
		if out.Unsafe != nil {
			part.Unsafe, part.UnsafeScore = out.Unsafe[lo:hi], out.UnsafeScore[lo:hi]
		}
		if out.NeedsReview != nil {
			part.NeedsReview = out.NeedsReview[lo:hi]
		}
		share := ms * float64(hi-lo) / float64(n)
		if total > 0 {
			share = ms * float64(sum(part.TokensUsed)) / float64(total)
		}
		answers[i] = batchAnswer{out: part, ms: share}
		at = hi
	}
	return answers, true
}

// batchFailure answers the batcher's own errors; nil for runner errors, which modelFailure answers.
func batchFailure(ctx context.Context, task string, m *LoadedModel, err error) *apiError {
	switch {
	case errors.Is(err, errRetired):
		return errorf(http.StatusServiceUnavailable, codeModelUnavailable, "task %s: model %s: %v", task, m.Info.ID, err)
	case errors.Is(err, errPanicked):
		return errorf(http.StatusInternalServerError, codeInternal, "task %s: model %s: %v", task, m.Info.ID, err)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		// The client left; nobody reads this answer, but the access log shows why.
		return errorf(http.StatusServiceUnavailable, codeModelUnavailable, "task %s: request cancelled while queued", task)
	}
	return nil
}
