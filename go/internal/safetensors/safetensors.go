// Package safetensors reads the safetensors format: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw little-endian data. Every offset and size
// is validated before use, so a corrupt file gives ErrFormat instead of a panic or a wrong read.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
)

var (
	// ErrFormat: the bytes are not a valid safetensors file.
	ErrFormat = errors.New("safetensors: invalid file")
	// ErrNotFound: no tensor has the requested name.
	ErrNotFound = errors.New("safetensors: tensor not found")
	// ErrDType: the tensor exists but has another dtype than requested.
	ErrDType = errors.New("safetensors: unexpected dtype")
)

// maxHeaderLen bounds the JSON header, as the reference implementation does, so a corrupt length cannot
// make the reader allocate gigabytes.
const maxHeaderLen = 100 << 20

var dtypeSizes = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// Tensor describes one tensor; Begin and End are byte offsets into the file (not the data section).
type Tensor struct {
	Name  string
	DType string
	Shape []int
	Begin int
	End   int
}

// File is a parsed safetensors file held in memory.
type File struct {
	Metadata map[string]string
	tensors  map[string]Tensor
	data     []byte
}

type headerEntry struct {
	DType       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets []int  `json:"data_offsets"`
}

// Open reads and parses a file; read failures are returned as they come from os (errors.Is(err, fs.ErrNotExist)).
func Open(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse validates the header and every tensor's byte range. It keeps a reference to raw.
func Parse(raw []byte) (*File, error) {
	if len(raw) < 8 {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the 8-byte header length", ErrFormat, len(raw))
	}
	headerLen := binary.LittleEndian.Uint64(raw[:8])
	if headerLen > maxHeaderLen || headerLen > uint64(len(raw)-8) {
		return nil, fmt.Errorf("%w: header length %d exceeds the file (%d bytes)", ErrFormat, headerLen, len(raw))
	}
	dataStart := 8 + int(headerLen)
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:dataStart], &entries); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object: %v", ErrFormat, err)
	}
	f := &File{Metadata: map[string]string{}, tensors: map[string]Tensor{}, data: raw}
	dataLen := len(raw) - dataStart
	for name, value := range entries {
		if name == "__metadata__" {
			if err := json.Unmarshal(value, &f.Metadata); err != nil {
				return nil, fmt.Errorf("%w: __metadata__ must map strings to strings: %v", ErrFormat, err)
			}
			continue
		}
		tensor, err := parseEntry(name, value, dataLen)
		if err != nil {
			return nil, err
		}
		tensor.Begin += dataStart
		tensor.End += dataStart
		f.tensors[name] = tensor
	}
	if err := checkNoOverlap(f.tensors); err != nil {
		return nil, err
	}
	return f, nil
}

func parseEntry(name string, value json.RawMessage, dataLen int) (Tensor, error) {
	var entry headerEntry
	if err := json.Unmarshal(value, &entry); err != nil {
		return Tensor{}, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
	}
	size, known := dtypeSizes[entry.DType]
	if !known {
		return Tensor{}, fmt.Errorf("%w: tensor %q: unknown dtype %q", ErrFormat, name, entry.DType)
	}
	if len(entry.DataOffsets) != 2 {
		return Tensor{}, fmt.Errorf("%w: tensor %q: data_offsets must hold 2 numbers", ErrFormat, name)
	}
	begin, end := entry.DataOffsets[0], entry.DataOffsets[1]
	if begin < 0 || end < begin || end > dataLen {
		return Tensor{}, fmt.Errorf("%w: tensor %q: data_offsets [%d, %d] outside the %d data bytes",
			ErrFormat, name, begin, end, dataLen)
	}
	elements := 1
	for _, dim := range entry.Shape {
		if dim < 0 || (dim > 0 && elements > math.MaxInt/size/dim) {
			return Tensor{}, fmt.Errorf("%w: tensor %q: invalid shape %v", ErrFormat, name, entry.Shape)
		}
		elements *= dim
	}
	if elements*size != end-begin {
		return Tensor{}, fmt.Errorf("%w: tensor %q: shape %v of %s needs %d bytes, data_offsets span %d",
			ErrFormat, name, entry.Shape, entry.DType, elements*size, end-begin)
	}
	return Tensor{Name: name, DType: entry.DType, Shape: entry.Shape, Begin: begin, End: end}, nil
}

func checkNoOverlap(tensors map[string]Tensor) error {
	ordered := make([]Tensor, 0, len(tensors))
	for _, t := range tensors {
		if t.End > t.Begin {
			ordered = append(ordered, t)
		}
	}
	sort.Slice(ordered, func(i, j int) bool { return ordered[i].Begin < ordered[j].Begin })
	for i := 1; i < len(ordered); i++ {
		if ordered[i].Begin < ordered[i-1].End {
			return fmt.Errorf("%w: tensors %q and %q overlap", ErrFormat, ordered[i-1].Name, ordered[i].Name)
		}
	}
	return nil
}

// Names lists the tensor names in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.tensors))
	for name := range f.tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Tensor returns the description of one tensor.
func (f *File) Tensor(name string) (Tensor, error) {
	t, ok := f.tensors[name]
	if !ok {
		return Tensor{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return t, nil
}

// Bytes returns the raw little-endian bytes of a tensor (a view into the file; do not modify).
func (f *File) Bytes(name string) ([]byte, error) {
	t, err := f.Tensor(name)
	if err != nil {
		return nil, err
	}
	return f.data[t.Begin:t.End], nil
}

// Float32 decodes an F32 tensor.
func (f *File) Float32(name string) ([]float32, []int, error) {
	raw, t, err := f.typed(name, "F32")
	if err != nil {
		return nil, nil, err
	}
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, t.Shape, nil
}

// Int64 decodes an I64 tensor.
func (f *File) Int64(name string) ([]int64, []int, error) {
	raw, t, err := f.typed(name, "I64")
	if err != nil {
		return nil, nil, err
	}
	out := make([]int64, len(raw)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out, t.Shape, nil
}

func (f *File) typed(name, dtype string) ([]byte, Tensor, error) {
	t, err := f.Tensor(name)
	if err != nil {
		return nil, Tensor{}, err
	}
	if t.DType != dtype {
		return nil, Tensor{}, fmt.Errorf("%w: %q is %s, expected %s", ErrDType, name, t.DType, dtype)
	}
	return f.data[t.Begin:t.End], t, nil
}
