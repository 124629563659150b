package main

import (
	"encoding/binary"
	"testing"

	"github.com/lorakit/lorakit/go/internal/safetensors"
)

// replaceInt64 overwrites element index of an I64 tensor inside raw safetensors bytes.
func replaceInt64(t *testing.T, raw []byte, tensor string, index int, value int64) {
	t.Helper()
	parsed, err := safetensors.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := parsed.Tensor(tensor)
	if err != nil || info.DType != "I64" || 8*(index+1) > info.End-info.Begin {
		t.Fatalf("cannot address I64 element %d of %s: %+v %v", index, tensor, info, err)
	}
	binary.LittleEndian.PutUint64(raw[info.Begin+8*index:], uint64(value))
}
