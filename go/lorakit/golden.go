package lorakit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"lorakit/internal/safetensors"
)

// GoldenFile is the name of the parity-vector file inside a model directory (docs/FORMAT.md).
const GoldenFile = "golden.safetensors"

// DefaultTolerance applies when golden.safetensors carries no "tolerance" metadata.
const DefaultTolerance = 1e-4

// Golden holds the parity vectors written at export: the texts, the token ids the Python tokenizer produced
// and the fp32 torch logits.
type Golden struct {
	Texts         []string
	NumTexts      int
	SeqLen        int
	NumLabels     int
	InputIDs      []int64   // row-major [NumTexts, SeqLen]
	AttentionMask []int64   // row-major [NumTexts, SeqLen]
	Logits        []float32 // row-major [NumTexts, NumLabels]
	Tolerance     float64
}

// ReadGolden reads a golden.safetensors file. An unreadable file gives ErrIO; a malformed one ErrFormat.
func ReadGolden(path string) (*Golden, error) {
	file, err := safetensors.Open(path)
	switch {
	case errors.Is(err, safetensors.ErrFormat):
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrIO, err)
	}
	g, err := goldenFrom(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	return g, nil
}

func goldenFrom(file *safetensors.File) (*Golden, error) {
	g := &Golden{Tolerance: DefaultTolerance}
	textsJSON, ok := file.Metadata["texts"]
	if !ok {
		return nil, errors.New(`metadata has no "texts"`)
	}
	if err := json.Unmarshal([]byte(textsJSON), &g.Texts); err != nil {
		return nil, fmt.Errorf(`metadata "texts" is not a JSON list of strings: %v`, err)
	}
	if text, ok := file.Metadata["tolerance"]; ok {
		tol, err := strconv.ParseFloat(text, 64)
		if err != nil || !(tol >= 0) || math.IsInf(tol, 0) {
			return nil, fmt.Errorf(`metadata "tolerance" %q is not a finite non-negative number`, text)
		}
		g.Tolerance = tol
	}
	g.NumTexts = len(g.Texts)

	var idsShape, maskShape, logitsShape []int
	var err error
	if g.InputIDs, idsShape, err = file.Int64("input_ids"); err != nil {
		return nil, err
	}
	if g.AttentionMask, maskShape, err = file.Int64("attention_mask"); err != nil {
		return nil, err
	}
	if g.Logits, logitsShape, err = file.Float32("logits"); err != nil {
		return nil, err
	}
	if len(idsShape) != 2 || idsShape[0] != g.NumTexts {
		return nil, fmt.Errorf("input_ids shape %v does not match %d texts", idsShape, g.NumTexts)
	}
	if !slices.Equal(maskShape, idsShape) {
		return nil, fmt.Errorf("attention_mask shape %v differs from input_ids %v", maskShape, idsShape)
	}
	if len(logitsShape) != 2 || logitsShape[0] != g.NumTexts {
		return nil, fmt.Errorf("logits shape %v does not match %d texts", logitsShape, g.NumTexts)
	}
	g.SeqLen, g.NumLabels = idsShape[1], logitsShape[1]
	return g, nil
}
