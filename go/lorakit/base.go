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

// Base is one base model held once in memory with any number of named LoRA adapters. It implements
// io.Closer and is safe for concurrent use; adapters may be added and removed while others classify.
type Base struct {
	life    lifecycle
	handle  *C.LorakitBase
	cleanup runtime.Cleanup
}

// LoadBase opens an HF base model directory (config.json, model.safetensors, tokenizer.json).
func LoadBase(dir string, opts Options) (*Base, error) {
	cDir, err := cString(dir, "base directory")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cDir))
	cOpts, release, err := opts.toC()
	if err != nil {
		return nil, err
	}
	defer release()

	var handle *C.LorakitBase
	var message *C.char
	status := C.lorakit_base_load(cDir, &cOpts, &handle, &message)
	if err := statusError(status, message); err != nil {
		return nil, err
	}
	b := &Base{handle: handle}
	b.cleanup = runtime.AddCleanup(b, releaseDroppedBase, handle)
	return b, nil
}

func releaseDroppedBase(handle *C.LorakitBase) {
	safetyNetReleases.Add(1)
	C.lorakit_base_free(handle)
}

// AddAdapter adds the adapter of the lorakit model directory modelDir under name. It refuses a directory
// trained on another base and a name already in use.
func (b *Base) AddAdapter(name, modelDir string) error {
	if err := b.life.enter(); err != nil {
		return err
	}
	defer b.life.leave()
	cName, err := cString(name, "adapter name")
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cName))
	cDir, err := cString(modelDir, "model directory")
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cDir))

	var message *C.char
	status := C.lorakit_base_add_adapter(b.handle, cName, cDir, &message)
	runtime.KeepAlive(b)
	return statusError(status, message)
}

// RemoveAdapter removes the named adapter; it returns false when there was none (or the base is closed).
func (b *Base) RemoveAdapter(name string) bool {
	if err := b.life.enter(); err != nil {
		return false
	}
	defer b.life.leave()
	cName, err := cString(name, "adapter name")
	if err != nil {
		return false
	}
	defer C.free(unsafe.Pointer(cName))

	var removed C.bool
	var message *C.char
	status := C.lorakit_base_remove_adapter(b.handle, cName, &removed, &message)
	runtime.KeepAlive(b)
	return statusError(status, message) == nil && bool(removed)
}

// Adapters lists the adapter names (nil once the base is closed).
func (b *Base) Adapters() []string {
	if err := b.life.enter(); err != nil {
		return nil
	}
	defer b.life.leave()

	var list *C.LorakitStrings
	var message *C.char
	status := C.lorakit_base_adapters(b.handle, &list, &message)
	runtime.KeepAlive(b)
	if statusError(status, message) != nil {
		return nil
	}
	defer C.lorakit_strings_free(list)
	return copyStrings(list)
}

// Labels returns the label names of the named adapter's head, in index order.
func (b *Base) Labels(adapter string) ([]string, error) {
	if err := b.life.enter(); err != nil {
		return nil, err
	}
	defer b.life.leave()
	cAdapter, err := cString(adapter, "adapter name")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cAdapter))

	var list *C.LorakitStrings
	var message *C.char
	status := C.lorakit_base_labels(b.handle, cAdapter, &list, &message)
	runtime.KeepAlive(b)
	if err := statusError(status, message); err != nil {
		return nil, err
	}
	defer C.lorakit_strings_free(list)
	return copyStrings(list), nil
}

// Classify runs the named adapter on a batch of texts.
func (b *Base) Classify(texts []string, adapter string) (*Result, error) {
	if err := b.life.enter(); err != nil {
		return nil, err
	}
	defer b.life.leave()
	cAdapter, err := cString(adapter, "adapter name")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cAdapter))
	batch := newCTexts(texts)
	defer batch.free()

	var res *C.LorakitResult
	var message *C.char
	status := C.lorakit_base_classify(b.handle, batch.pointer(), batch.count(), cAdapter, &res, &message)
	runtime.KeepAlive(batch)
	runtime.KeepAlive(b)
	if err := statusError(status, message); err != nil {
		return nil, err
	}
	defer C.lorakit_result_free(res)
	return copyResult(res), nil
}

// Close releases the base and its adapters after the calls in flight finish. Idempotent; always nil.
func (b *Base) Close() error {
	b.life.close(func() {
		b.cleanup.Stop()
		C.lorakit_base_free(b.handle)
		b.handle = nil
	})
	runtime.KeepAlive(b)
	return nil
}
