package router

import (
	"context"
	"errors"
	"fmt"

	"github.com/lorakit/lorakit/go/discovery"
)

// ErrLoadTimeout marks a reload whose loading did not finish within Config.LoadTimeout.
var ErrLoadTimeout = errors.New("loading timed out")

// loadWithin runs the loader, waiting at most timeout (0 = unbounded). The loader's context is cancelled
// at the deadline, so a loader that checks it between models stops there; one stuck inside a read (a hung
// network filesystem) is abandoned, and whatever it loads when it returns is closed, never served.
func (s *Server) loadWithin(ctx context.Context, cat *discovery.Catalog) (*LoadedSet, error) {
	timeout := s.cfg.LoadTimeout
	if timeout <= 0 {
		return s.cfg.Loader.Load(ctx, cat)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		set *LoadedSet
		err error
	}
	done := make(chan result, 1)
	go func() {
		set, err := s.cfg.Loader.Load(ctx, cat)
		done <- result{set, err}
	}()
	select {
	case r := <-done:
		if ctx.Err() == nil || r.err == nil {
			return r.set, r.err
		}
	case <-ctx.Done():
		go func() { // closes what the abandoned load still produces
			if r := <-done; r.err == nil {
				for _, c := range r.set.Closers {
					c.Close()
				}
			}
		}()
	}
	return nil, fmt.Errorf("%w: loading %d models took longer than %s (a hung filesystem or device?); the current generation keeps serving",
		ErrLoadTimeout, len(cat.Models), timeout)
}
