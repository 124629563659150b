package lorakit

/*
#include <stdlib.h>
#include "lorakit.h"
*/
import "C"

import (
	"strings"
	"unsafe"
)

// cTexts is a batch copied into C memory: one buffer holding every text and a Go slice of (pointer, length)
// entries into it. The Go slice holds only C pointers, so passing it to C satisfies the cgo pointer rules.
type cTexts struct {
	buffer  unsafe.Pointer
	entries []C.LorakitText
}

func newCTexts(texts []string) *cTexts {
	total := 0
	for _, t := range texts {
		total += len(t)
	}
	batch := &cTexts{entries: make([]C.LorakitText, len(texts))}
	if total > 0 {
		batch.buffer = C.malloc(C.size_t(total))
		bytes := unsafe.Slice((*byte)(batch.buffer), total)
		offset := 0
		for i, t := range texts {
			copy(bytes[offset:], t)
			if len(t) > 0 {
				batch.entries[i].data = (*C.char)(unsafe.Add(batch.buffer, offset))
			}
			batch.entries[i].len = C.size_t(len(t))
			offset += len(t)
		}
	}
	return batch
}

// pointer is the first entry, or nil for an empty batch.
func (b *cTexts) pointer() *C.LorakitText {
	if len(b.entries) == 0 {
		return nil
	}
	return &b.entries[0]
}

func (b *cTexts) count() C.size_t { return C.size_t(len(b.entries)) }

// at is the entry at index start of a run of n entries, or nil when the run is empty.
func (b *cTexts) at(start, n int) *C.LorakitText {
	if n == 0 {
		return nil
	}
	return &b.entries[start]
}

func (b *cTexts) free() {
	if b.buffer != nil {
		C.free(b.buffer)
		b.buffer = nil
	}
}

// cString copies an argument into C memory (the caller frees it with C.free). A NUL byte would silently cut
// the string short in C, so it is an input error.
func cString(s, what string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, inputError("%s contains a NUL byte", what)
	}
	return C.CString(s), nil
}
