package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// encode builds a file from a header map and a data section, so tests control every byte.
func encode(t *testing.T, header map[string]any, data []byte) []byte {
	t.Helper()
	text, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(text)))
	return append(append(out, text...), data...)
}

func sample(t *testing.T) []byte {
	data := binary.LittleEndian.AppendUint64(nil, uint64(101))
	data = binary.LittleEndian.AppendUint64(data, math.MaxUint64) // -1 as int64
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(1.5))
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(-2.25))
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(3))
	return encode(t, map[string]any{
		"__metadata__": map[string]string{"texts": `["a","b"]`, "tolerance": "1e-4"},
		"ids":          map[string]any{"dtype": "I64", "shape": []int{1, 2}, "data_offsets": []int{0, 16}},
		"logits":       map[string]any{"dtype": "F32", "shape": []int{3}, "data_offsets": []int{16, 28}},
	}, data)
}

func TestParseDecodesTensorsAndMetadata(t *testing.T) {
	f, err := Parse(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Names(); !reflect.DeepEqual(got, []string{"ids", "logits"}) {
		t.Fatalf("names = %v", got)
	}
	ids, shape, err := f.Int64("ids")
	if err != nil || !reflect.DeepEqual(ids, []int64{101, -1}) || !reflect.DeepEqual(shape, []int{1, 2}) {
		t.Fatalf("ids = %v %v %v", ids, shape, err)
	}
	logits, shape, err := f.Float32("logits")
	if err != nil || !reflect.DeepEqual(logits, []float32{1.5, -2.25, 3}) || !reflect.DeepEqual(shape, []int{3}) {
		t.Fatalf("logits = %v %v %v", logits, shape, err)
	}
	if f.Metadata["tolerance"] != "1e-4" || f.Metadata["texts"] != `["a","b"]` {
		t.Fatalf("metadata = %v", f.Metadata)
	}
}

func TestLookupErrorsAreTyped(t *testing.T) {
	f, err := Parse(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Float32("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing tensor: %v", err)
	}
	if _, _, err := f.Float32("ids"); !errors.Is(err, ErrDType) {
		t.Fatalf("wrong dtype: %v", err)
	}
}

func TestCorruptFilesAreFormatErrors(t *testing.T) {
	entry := func(dtype string, shape []int, begin, end int) map[string]any {
		return map[string]any{"dtype": dtype, "shape": shape, "data_offsets": []int{begin, end}}
	}
	valid := sample(t)
	cases := map[string][]byte{
		"empty":                {},
		"short length":         {1, 2, 3},
		"header past the end":  binary.LittleEndian.AppendUint64(nil, 1000),
		"huge header length":   binary.LittleEndian.AppendUint64(nil, math.MaxUint64),
		"not json":             append(binary.LittleEndian.AppendUint64(nil, 3), "{x}"...),
		"truncated data":       valid[:len(valid)-1],
		"offset past data":     encode(t, map[string]any{"x": entry("F32", []int{2}, 0, 8)}, make([]byte, 4)),
		"reversed offsets":     encode(t, map[string]any{"x": entry("F32", []int{0}, 4, 0)}, make([]byte, 4)),
		"size disagrees":       encode(t, map[string]any{"x": entry("F32", []int{3}, 0, 8)}, make([]byte, 8)),
		"unknown dtype":        encode(t, map[string]any{"x": entry("F128", []int{1}, 0, 16)}, make([]byte, 16)),
		"negative dim":         encode(t, map[string]any{"x": entry("F32", []int{-1}, 0, 4)}, make([]byte, 4)),
		"overflowing shape":    encode(t, map[string]any{"x": entry("F64", []int{1 << 40, 1 << 40}, 0, 8)}, make([]byte, 8)),
		"overlapping tensors":  encode(t, map[string]any{"x": entry("F32", []int{2}, 0, 8), "y": entry("F32", []int{2}, 4, 12)}, make([]byte, 12)),
		"one offset":           encode(t, map[string]any{"x": map[string]any{"dtype": "F32", "shape": []int{1}, "data_offsets": []int{4}}}, make([]byte, 4)),
		"metadata not strings": encode(t, map[string]any{"__metadata__": map[string]int{"a": 1}}, nil),
		"entry of wrong type":  encode(t, map[string]any{"x": "F32"}, nil),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(raw); !errors.Is(err, ErrFormat) {
				t.Fatalf("want ErrFormat, got %v", err)
			}
		})
	}
}

func TestOpenReportsMissingFilesAndNamesThePath(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "absent.safetensors")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.safetensors")
	if err := os.WriteFile(bad, []byte("garbage!garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(bad)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("corrupt file: %v", err)
	}
	good := filepath.Join(dir, "good.safetensors")
	if err := os.WriteFile(good, sample(t), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(good)
	if err != nil {
		t.Fatal(err)
	}
	tensor, err := f.Tensor("logits")
	if err != nil || tensor.End-tensor.Begin != 12 {
		t.Fatalf("tensor = %+v, %v", tensor, err)
	}
	raw, _ := f.Bytes("logits")
	if math.Float32frombits(binary.LittleEndian.Uint32(raw)) != 1.5 {
		t.Fatal("Bytes must point at the tensor's data")
	}
}
