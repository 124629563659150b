package lorakit

/*
#include <stdlib.h>
#include "lorakit.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Model is a loaded encoder with named tasks: a lorakit model directory (Load: one task, its default) or a
// base that adapters are added to (LoadBase). It implements io.Closer and is safe for concurrent use;
// adapters may be added and removed while other goroutines classify.
//
// Calls that run a task take an adapter name; "" means the default task (the directory's own for Load, or
// the only adapter loaded).
type Model struct {
	life    lifecycle
	handle  *C.LorakitModel
	cleanup runtime.Cleanup

	// Fixed at load: readable after Close.
	name          string
	architecture  string
	weightsSHA256 string
}

// Load opens a lorakit model directory. merged = true uses model.safetensors; false loads the manifest's base
// and applies the directory's adapter at runtime, and then more adapters of that base may be added.
func Load(dir string, merged bool, opts Options) (*Model, error) {
	return load(dir, "model directory", opts, func(cDir *C.char, cOpts *C.LorakitOptions, out **C.LorakitModel,
		message **C.char) C.LorakitStatus {
		return C.lorakit_model_load(cDir, C.bool(merged), cOpts, out, message)
	})
}

// LoadBase opens an HF base model directory (config.json, model.safetensors, tokenizer.json) with no task;
// add tasks with AddAdapter.
func LoadBase(dir string, opts Options) (*Model, error) {
	return load(dir, "base directory", opts, func(cDir *C.char, cOpts *C.LorakitOptions, out **C.LorakitModel,
		message **C.char) C.LorakitStatus {
		return C.lorakit_model_load_base(cDir, cOpts, out, message)
	})
}

// load converts the arguments, runs one of the C loaders and wraps the handle.
func load(dir, what string, opts Options,
	call func(dir *C.char, opts *C.LorakitOptions, out **C.LorakitModel, message **C.char) C.LorakitStatus,
) (*Model, error) {
	cDir, err := cString(dir, what)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cDir))
	cOpts, release, err := opts.toC()
	if err != nil {
		return nil, err
	}
	defer release()

	var handle *C.LorakitModel
	var message *C.char
	if err := statusError(call(cDir, &cOpts, &handle, &message), message); err != nil {
		return nil, err
	}
	m := &Model{
		handle:        handle,
		name:          goStringOrEmpty(C.lorakit_model_name(handle)),
		architecture:  goStringOrEmpty(C.lorakit_model_architecture(handle)),
		weightsSHA256: goStringOrEmpty(C.lorakit_model_weights_sha256(handle)),
	}
	// Safety net for a Model dropped without Close; Close stops it.
	m.cleanup = runtime.AddCleanup(m, releaseDroppedModel, handle)
	return m, nil
}

func releaseDroppedModel(handle *C.LorakitModel) {
	safetyNetReleases.Add(1)
	C.lorakit_model_free(handle)
}

// Name is the manifest name (Load) or the base directory's name (LoadBase).
func (m *Model) Name() string { return m.name }

// Architecture is the encoder's config.json model_type, e.g. "bert".
func (m *Model) Architecture() string { return m.architecture }

// WeightsSHA256 is the sha256 of the base weights that added adapters must have been trained on; "" for
// merged weights, which take no adapters.
func (m *Model) WeightsSHA256() string { return m.weightsSHA256 }

// Classify runs the default task on a batch of texts (at most Options.MaxBatch; an empty batch is an input
// error).
func (m *Model) Classify(texts []string) (*Result, error) { return m.ClassifyWith("", texts) }

// ClassifyWith runs the named adapter ("" = the default task) on a batch of texts.
func (m *Model) ClassifyWith(adapter string, texts []string) (*Result, error) {
	var out *Result
	err := m.taskCall(adapter, texts, func(cAdapter *C.char, batch *cTexts) error {
		var res *C.LorakitResult
		var message *C.char
		status := C.lorakit_model_classify(m.handle, cAdapter, batch.pointer(), batch.count(), &res, &message)
		if err := statusError(status, message); err != nil {
			return err
		}
		defer C.lorakit_result_free(res)
		out = copyResult(res)
		return nil
	})
	return out, err
}

// Tokenize returns the token ids of the default task exactly as Classify computes them.
func (m *Model) Tokenize(texts []string) (*Encoding, error) { return m.TokenizeWith("", texts) }

// TokenizeWith returns the token ids of the named adapter ("" = the default task) exactly as ClassifyWith
// computes them.
func (m *Model) TokenizeWith(adapter string, texts []string) (*Encoding, error) {
	var out *Encoding
	err := m.taskCall(adapter, texts, func(cAdapter *C.char, batch *cTexts) error {
		var enc *C.LorakitEncoding
		var message *C.char
		status := C.lorakit_model_tokenize(m.handle, cAdapter, batch.pointer(), batch.count(), &enc, &message)
		if err := statusError(status, message); err != nil {
			return err
		}
		defer C.lorakit_encoding_free(enc)
		out = copyEncoding(enc)
		return nil
	})
	return out, err
}

// timeClassify runs Classify's native work iterations times inside Rust and returns the total nanoseconds;
// used to measure the binding's overhead.
func (m *Model) timeClassify(texts []string, iterations int) (uint64, error) {
	var elapsed C.uint64_t
	err := m.taskCall("", texts, func(cAdapter *C.char, batch *cTexts) error {
		var message *C.char
		status := C.lorakit_model_time_classify(m.handle, cAdapter, batch.pointer(), batch.count(),
			C.size_t(iterations), &elapsed, &message)
		return statusError(status, message)
	})
	return uint64(elapsed), err
}

// taskCall runs call inside the lifecycle guard with the adapter name (NULL for "") and the batch in C memory.
func (m *Model) taskCall(adapter string, texts []string, call func(cAdapter *C.char, batch *cTexts) error) error {
	if err := m.life.enter(); err != nil {
		return err
	}
	defer m.life.leave()
	cAdapter, err := cAdapterName(adapter)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cAdapter))
	batch := newCTexts(texts)
	defer batch.free()
	err = call(cAdapter, batch)
	runtime.KeepAlive(batch)
	runtime.KeepAlive(m)
	return err
}

// Close releases the native model and all its tasks after the calls in flight finish. It is idempotent and
// always returns nil.
func (m *Model) Close() error {
	m.life.close(func() {
		m.cleanup.Stop()
		C.lorakit_model_free(m.handle)
		m.handle = nil
	})
	runtime.KeepAlive(m)
	return nil
}
