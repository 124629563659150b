package discovery

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrUnsafePath marks a model path the scan refuses to read: a symlink that leaves the models root (without
// Options.FollowSymlinks) or anything that is not a regular file where one is expected (a FIFO, a device, a
// socket), which could block a reader forever or read something that is not part of a model.
var ErrUnsafePath = errors.New("unsafe path")

// ErrTimeout marks a read of the models root that did not finish within Options.ReadTimeout.
var ErrTimeout = errors.New("read timed out")

// DefaultReadTimeout bounds the reads of one model directory (or of a fingerprint) in the router.
const DefaultReadTimeout = 60 * time.Second

// regularFile stats name (following symlinks) and refuses anything but a regular file, before any open: opening
// a FIFO for reading blocks until a writer appears.
func regularFile(name string) (fs.FileInfo, error) {
	info, err := os.Stat(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrMissingFile, name)
		}
		return nil, fmt.Errorf("%w: %v", ErrMissingFile, err)
	}
	switch {
	case info.IsDir():
		return nil, fmt.Errorf("%w: %s is a directory, not a regular file", ErrMissingFile, name)
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("%w: %s is a %s, not a regular file", ErrUnsafePath, name, fileKind(info.Mode()))
	}
	return info, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// within reports whether path is root or below it (both already free of symlinks).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// insideRoot refuses path when, symlinks resolved, it leaves realRoot (unless follow is set).
func insideRoot(realRoot, path string, follow bool) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrMissingFile, path)
		}
		return fmt.Errorf("%w: %v", ErrMissingFile, err)
	}
	if !follow && !within(realRoot, real) {
		return fmt.Errorf("%w: %s resolves to %s, outside the models root %s (--follow-symlinks serves it)",
			ErrUnsafePath, path, real, realRoot)
	}
	return nil
}

// bounded runs read and waits at most timeout (0 = no bound) for it. A read stuck in the kernel (a hung
// network filesystem) cannot be cancelled: it is abandoned, and the caller gets ErrTimeout instead.
func bounded[T any](timeout time.Duration, what string, read func() (T, error)) (T, error) {
	if timeout <= 0 {
		return read()
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := read()
		done <- result{v, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.v, r.err
	case <-timer.C:
		var zero T
		return zero, fmt.Errorf("%w: %s took longer than %s (a hung network filesystem?)", ErrTimeout, what, timeout)
	}
}
