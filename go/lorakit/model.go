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

// Model is a loaded lorakit model directory. It implements io.Closer and is safe for concurrent use.
type Model struct {
	life    lifecycle
	handle  *C.LorakitModel
	cleanup runtime.Cleanup

	// Metadata copied at load: it never changes and stays readable after Close.
	name      string
	task      string
	labels    []string
	maxSeqLen int
}

// Load opens a lorakit model directory. merged = true uses model.safetensors; false loads the manifest's base
// and applies the directory's adapter at runtime.
func Load(dir string, merged bool, opts Options) (*Model, error) {
	cDir, err := cString(dir, "model directory")
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
	status := C.lorakit_model_load(cDir, C.bool(merged), &cOpts, &handle, &message)
	if err := statusError(status, message); err != nil {
		return nil, err
	}
	m := &Model{
		handle:    handle,
		name:      goStringOrEmpty(C.lorakit_model_name(handle)),
		task:      goStringOrEmpty(C.lorakit_model_task(handle)),
		labels:    make([]string, int(C.lorakit_model_num_labels(handle))),
		maxSeqLen: int(C.lorakit_model_max_seq_len(handle)),
	}
	for i := range m.labels {
		m.labels[i] = goStringOrEmpty(C.lorakit_model_label(handle, C.size_t(i)))
	}
	// Safety net for a Model dropped without Close; Close stops it.
	m.cleanup = runtime.AddCleanup(m, releaseDroppedModel, handle)
	return m, nil
}

// Classify runs the model on a batch of texts (at most Options.MaxBatch; an empty batch is an input error).
func (m *Model) Classify(texts []string) (*Result, error) {
	if err := m.life.enter(); err != nil {
		return nil, err
	}
	defer m.life.leave()
	batch := newCTexts(texts)
	defer batch.free()

	var res *C.LorakitResult
	var message *C.char
	status := C.lorakit_model_classify(m.handle, batch.pointer(), batch.count(), &res, &message)
	runtime.KeepAlive(batch)
	runtime.KeepAlive(m)
	if err := statusError(status, message); err != nil {
		return nil, err
	}
	defer C.lorakit_result_free(res)
	return copyResult(res), nil
}

// Tokenize returns the token ids exactly as Classify computes them.
func (m *Model) Tokenize(texts []string) (*Encoding, error) {
	if err := m.life.enter(); err != nil {
		return nil, err
	}
	defer m.life.leave()
	batch := newCTexts(texts)
	defer batch.free()

	var enc *C.LorakitEncoding
	var message *C.char
	status := C.lorakit_model_tokenize(m.handle, batch.pointer(), batch.count(), &enc, &message)
	runtime.KeepAlive(batch)
	runtime.KeepAlive(m)
	if err := statusError(status, message); err != nil {
		return nil, err
	}
	defer C.lorakit_encoding_free(enc)
	return copyEncoding(enc), nil
}

// Labels returns the label names in index order (a copy).
func (m *Model) Labels() []string { return append([]string(nil), m.labels...) }

// Name is the model name from lorakit.json.
func (m *Model) Name() string { return m.name }

// Task is the task from lorakit.json, e.g. "sequence_classification".
func (m *Model) Task() string { return m.task }

// MaxSeqLen is the maximum number of tokens per text; longer texts are truncated (see Result.TokensIn).
func (m *Model) MaxSeqLen() int { return m.maxSeqLen }

// Close releases the native model after the calls in flight finish. It is idempotent and always returns nil.
func (m *Model) Close() error {
	m.life.close(func() {
		m.cleanup.Stop()
		C.lorakit_model_free(m.handle)
		m.handle = nil
	})
	runtime.KeepAlive(m)
	return nil
}

func releaseDroppedModel(handle *C.LorakitModel) {
	safetyNetReleases.Add(1)
	C.lorakit_model_free(handle)
}

// timeClassify runs Classify's native work iterations times inside Rust and returns the total nanoseconds;
// used to measure the binding's overhead.
func (m *Model) timeClassify(texts []string, iterations int) (uint64, error) {
	if err := m.life.enter(); err != nil {
		return 0, err
	}
	defer m.life.leave()
	batch := newCTexts(texts)
	defer batch.free()

	var elapsed C.uint64_t
	var message *C.char
	status := C.lorakit_model_time_classify(m.handle, batch.pointer(), batch.count(), C.size_t(iterations), &elapsed, &message)
	runtime.KeepAlive(batch)
	runtime.KeepAlive(m)
	if err := statusError(status, message); err != nil {
		return 0, err
	}
	return uint64(elapsed), nil
}
