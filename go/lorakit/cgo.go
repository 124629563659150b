// Package lorakit runs lorakit model directories through the native Rust core via its C ABI.
//
// One type, Model, holds an encoder with named tasks: Load opens a model directory (its own task is the
// default one), LoadBase a base that adapters are added to. Models are safe for concurrent use by many
// goroutines. Close waits for calls in flight; calls made after Close return ErrClosed. Errors wrap one of
// the sentinel errors below, so errors.Is works:
//
//	m, err := lorakit.Load(dir, true, lorakit.Options{})
//	if errors.Is(err, lorakit.ErrFormat) { ... }
//	res, err := m.Classify(texts)                 // the default task
//	res, err = base.ClassifyWith("intent", texts) // a named adapter
//
// # Linking
//
// The package links the native library liblorakit (installed by `make install-lib` of the lorakit
// repository) and finds it, with its header lorakit.h, through pkg-config:
//
//	go build                                 # pkg-config lorakit: the shared library liblorakit.so
//	go build -tags lorakit_static            # pkg-config lorakit-static: the static archive liblorakit.a
//	go build -tags lorakit_nopkgconfig       # no pkg-config: CGO_CFLAGS and CGO_LDFLAGS say where it is
//
// See docs/go.md in the repository.
package lorakit

/*
#include <stdlib.h>
#include "lorakit.h"
*/
import "C"

// Version is the native library version.
func Version() string {
	return C.GoString(C.lorakit_version())
}
