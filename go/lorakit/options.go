package lorakit

/*
#include <stdlib.h>
#include "lorakit.h"
*/
import "C"

import (
	"strconv"
	"strings"
	"unsafe"
)

// Precision is the arithmetic of the encoder's dense layers (docs/precision.md). PrecisionFP32, the zero value,
// is the default and the one the golden files gate; the others run on the CPU only.
type Precision int

const (
	// PrecisionFP32: f32 everywhere.
	PrecisionFP32 Precision = iota
	// PrecisionBF16: bf16 weights and inputs of the encoder's dense layers, f32 sums.
	PrecisionBF16
	// PrecisionInt8: int8 dynamic quantisation of the encoder's dense layers (per-channel weights, per-row inputs).
	PrecisionInt8
)

// String gives the name ParsePrecision accepts.
func (p Precision) String() string {
	switch p {
	case PrecisionFP32:
		return "fp32"
	case PrecisionBF16:
		return "bf16"
	case PrecisionInt8:
		return "int8"
	}
	return "Precision(" + strconv.Itoa(int(p)) + ")"
}

// ParsePrecision reads "fp32", "bf16" or "int8" (case-insensitive); anything else is an ErrInput.
func ParsePrecision(s string) (Precision, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "fp32", "f32", "float32":
		return PrecisionFP32, nil
	case "bf16", "bfloat16":
		return PrecisionBF16, nil
	case "int8", "qint8":
		return PrecisionInt8, nil
	}
	return PrecisionFP32, inputError("unknown precision %q (expected \"fp32\", \"bf16\" or \"int8\")", s)
}

// Options configures Load and LoadBase. The zero value means: CPU, physical cores, checksums verified,
// the core's default batch limit (1024), NaN or Inf outputs refused, fp32.
type Options struct {
	Device        string // "cpu" (default), "cuda", "cuda:N"
	Threads       int    // 0 = physical cores
	SkipChecksums bool   // default false: verify lorakit.json sha256 table
	MaxBatch      int    // 0 = core default (1024)
	// AllowNonFinite returns NaN or Inf outputs (logits, token logits, embeddings) as they are; by default a
	// call that produces one fails with ErrCompute naming the text and the output.
	AllowNonFinite bool
	// Precision of the encoder's dense layers; PrecisionFP32 (zero) by default.
	Precision Precision
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
	if o.Precision < PrecisionFP32 || o.Precision > PrecisionInt8 {
		return opts, nil, inputError("Options.Precision %d is not PrecisionFP32, PrecisionBF16 or PrecisionInt8", int(o.Precision))
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
	opts.precision = C.uint32_t(o.Precision)
	return opts, func() { C.free(unsafe.Pointer(device)) }, nil
}
