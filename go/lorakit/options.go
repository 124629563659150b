package lorakit

/*
#include <stdlib.h>
#include "lorakit.h"
*/
import "C"

import "unsafe"

// Options configures Load and LoadBase. The zero value means: CPU, physical cores, checksums verified,
// the core's default batch limit (1024), NaN or Inf outputs refused.
type Options struct {
	Device        string // "cpu" (default), "cuda", "cuda:N"
	Threads       int    // 0 = physical cores
	SkipChecksums bool   // default false: verify lorakit.json sha256 table
	MaxBatch      int    // 0 = core default (1024)
	// AllowNonFinite returns NaN or Inf outputs (logits, token logits, embeddings) as they are; by default a
	// call that produces one fails with ErrCompute naming the text and the output.
	AllowNonFinite bool
}

// toC converts the options; the returned release func frees the C strings.
func (o Options) toC() (C.LorakitOptions, func(), error) {
	var opts C.LorakitOptions
	if o.Threads < 0 {
		return opts, nil, inputError("Options.Threads is negative (%d)", o.Threads)
	}
	if o.MaxBatch < 0 {
		return opts, nil, inputError("Options.MaxBatch is negative (%d)", o.MaxBatch)
	}
	device, err := cString(o.Device, "Options.Device")
	if err != nil {
		return opts, nil, err
	}
	opts.device = device
	opts.threads = C.size_t(o.Threads)
	opts.skip_checksums = C.bool(o.SkipChecksums)
	opts.max_batch = C.size_t(o.MaxBatch)
	opts.allow_non_finite = C.bool(o.AllowNonFinite)
	return opts, func() { C.free(unsafe.Pointer(device)) }, nil
}
