package lorakit

import (
	"sync"
	"sync/atomic"
)

// lifecycle lets many calls run at once while Close waits for them: calls hold the read lock, Close takes
// the write lock, and every call after Close sees closed and returns ErrClosed.
type lifecycle struct {
	mu     sync.RWMutex
	closed bool
}

// enter starts a call; on success the caller must call leave.
func (l *lifecycle) enter() error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (l *lifecycle) leave() { l.mu.RUnlock() }

// close runs release once, after every call in flight has left; it reports whether this call closed.
func (l *lifecycle) close(release func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.closed = true
	release()
	return true
}

// safetyNetReleases counts handles freed by a GC cleanup because Close was never called (a caller bug worth
// seeing in tests).
var safetyNetReleases atomic.Int64
