package lorakit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/lorakit/lorakit/go/internal/safetensors"
)

// GoldenFile is the name of the parity-vector file inside a model directory (docs/FORMAT.md).
const GoldenFile = "golden.safetensors"

// DefaultTolerance applies when golden.safetensors carries no "tolerance" metadata.
const DefaultTolerance = 1e-4

// Golden outputs (the "output" metadata), one per task kind (docs/FORMAT.md "Tasks").
const (
	OutputLogits      = "logits"       // sequence classification: Logits [NumTexts, NumLabels]
	OutputTokenLogits = "token_logits" // token classification: Logits [NumTexts, SeqLen, NumLabels] + Entities
	OutputEmbeddings  = "embeddings"   // embedding: Embeddings [NumTexts, Dim]
)

// Golden holds the parity vectors written at export: the texts, the token ids the Python tokenizer produced
// and the fp32 torch outputs of the model's task.
type Golden struct {
	Texts         []string
	NumTexts      int
	SeqLen        int
	Output        string // OutputLogits, OutputTokenLogits, OutputEmbeddings or OutputNextTokenLogits
	NumLabels     int
	InputIDs      []int64 // row-major [NumTexts, SeqLen]
	AttentionMask []int64 // row-major [NumTexts, SeqLen]
	// Logits are row-major [NumTexts, NumLabels], [NumTexts, SeqLen, NumLabels] for token logits (padding
	// positions hold no defined values), or [NumTexts, VocabSize] for next-token logits.
	Logits     []float32
	Entities   [][]Entity // token logits: the Python reference decoder's entities per text
	Dim        int
	Embeddings []float32 // row-major [NumTexts, Dim]
	Tolerance  float64
	// Calibrated sequence classification: Probabilities are softmax(torch logits / temperature), row-major
	// [NumTexts, NumLabels] (nil for an uncalibrated model), compared within Tolerance, and ReviewThreshold (when
	// HasReviewThreshold) is the threshold the review verdicts follow.
	Probabilities      []float32
	ReviewThreshold    float64
	HasReviewThreshold bool
	// Generative classification (OutputNextTokenLogits): the label distributions, row-major [NumTexts,
	// NumLabels], compared within ProbTolerance, and the few-shot cases.
	VocabSize     int
	LabelProbs    []float32
	ProbTolerance float64
	FewShot       []FewShotGolden
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
	g.Output = OutputLogits
	if output, ok := file.Metadata["output"]; ok {
		g.Output = output
	}

	var idsShape, maskShape []int
	var err error
	if g.InputIDs, idsShape, err = file.Int64("input_ids"); err != nil {
		return nil, err
	}
	if g.AttentionMask, maskShape, err = file.Int64("attention_mask"); err != nil {
		return nil, err
	}
	if len(idsShape) != 2 || idsShape[0] != g.NumTexts {
		return nil, fmt.Errorf("input_ids shape %v does not match %d texts", idsShape, g.NumTexts)
	}
	if !slices.Equal(maskShape, idsShape) {
		return nil, fmt.Errorf("attention_mask shape %v differs from input_ids %v", maskShape, idsShape)
	}
	g.SeqLen = idsShape[1]
	switch g.Output {
	case OutputLogits, OutputTokenLogits:
		return g, g.readLogits(file)
	case OutputNextTokenLogits:
		return g, g.readGenerative(file)
	case OutputEmbeddings:
		var shape []int
		if g.Embeddings, shape, err = file.Float32("embeddings"); err != nil {
			return nil, err
		}
		if len(shape) != 2 || shape[0] != g.NumTexts {
			return nil, fmt.Errorf("embeddings shape %v does not match %d texts", shape, g.NumTexts)
		}
		g.Dim = shape[1]
		return g, nil
	default:
		return nil, fmt.Errorf(`metadata "output" %q is none of %q, %q, %q, %q`, g.Output, OutputLogits,
			OutputTokenLogits, OutputEmbeddings, OutputNextTokenLogits)
	}
}

// readLogits reads [N, C] logits, or [N, L, C] token logits and the reference entities.
func (g *Golden) readLogits(file *safetensors.File) error {
	var shape []int
	var err error
	if g.Logits, shape, err = file.Float32("logits"); err != nil {
		return err
	}
	if g.Output == OutputLogits {
		if len(shape) != 2 || shape[0] != g.NumTexts {
			return fmt.Errorf("logits shape %v does not match %d texts", shape, g.NumTexts)
		}
		g.NumLabels = shape[1]
		return g.readCalibrated(file, shape)
	}
	if len(shape) != 3 || shape[0] != g.NumTexts || shape[1] != g.SeqLen {
		return fmt.Errorf("token logits shape %v does not match %d texts of %d tokens", shape, g.NumTexts, g.SeqLen)
	}
	g.NumLabels = shape[2]
	entities, ok := file.Metadata["entities"]
	if !ok {
		return errors.New(`token logits without metadata "entities"`)
	}
	if err := json.Unmarshal([]byte(entities), &g.Entities); err != nil {
		return fmt.Errorf(`metadata "entities" is not a JSON list of entity lists: %v`, err)
	}
	if len(g.Entities) != g.NumTexts {
		return fmt.Errorf(`metadata "entities" has %d lists for %d texts`, len(g.Entities), g.NumTexts)
	}
	return nil
}

// readCalibrated reads the optional probabilities (shaped like the logits) and the review_threshold metadata,
// which needs them.
func (g *Golden) readCalibrated(file *safetensors.File, logitsShape []int) error {
	text, hasThreshold := file.Metadata["review_threshold"]
	if !slices.Contains(file.Names(), "probabilities") {
		if hasThreshold {
			return errors.New(`metadata "review_threshold" without probabilities`)
		}
		return nil
	}
	probabilities, shape, err := file.Float32("probabilities")
	if err != nil {
		return err
	}
	if !slices.Equal(shape, logitsShape) {
		return fmt.Errorf("probabilities shape %v differs from logits %v", shape, logitsShape)
	}
	g.Probabilities = probabilities
	if hasThreshold {
		t, err := strconv.ParseFloat(text, 64)
		if err != nil || !(t >= 0 && t <= 1) {
			return fmt.Errorf(`metadata "review_threshold" %q is not a number in [0, 1]`, text)
		}
		g.ReviewThreshold, g.HasReviewThreshold = t, true
	}
	return nil
}
