package lorakit

/*
#include "lorakit.h"
*/
import "C"

import (
	"sort"
	"unsafe"
)

// Result holds the outcome of classifying a batch.
type Result struct {
	Labels     []string // label names, index order
	NumTexts   int
	NumLabels  int
	Logits     []float32 // row-major [NumTexts, NumLabels]
	TokensIn   []int     // per text, tokens before truncation
	TokensUsed []int     // per text, tokens used

	// HasUnsafeLabels is true when the manifest declares unsafe labels (TaskInfo.UnsafeLabels); only then are
	// Unsafe and UnsafeScore set.
	HasUnsafeLabels bool
	Unsafe          []bool    // per text: the top label is an unsafe one
	UnsafeScore     []float32 // per text: the summed probability of the unsafe labels

	// NeedsReview (per text) is true when the top probability is below the calibration's review threshold;
	// all false when the model has none.
	NeedsReview []bool
	// Calibration is the model's: the probabilities are softmax(Logits / Calibration.Temperature).
	Calibration Calibration

	// Probabilities computed by the native core at classification time (the math lives in one place).
	probabilities []float32
}

// Score is one label of one text with its probability.
type Score struct {
	Index int
	Label string
	Prob  float32
}

// Encoding is a tokenized batch: row-major [NumTexts, SeqLen], right padded (left padded for generative
// classification, whose prompts end where the answer starts).
type Encoding struct {
	NumTexts, SeqLen        int
	InputIDs, AttentionMask []int64
}

// Probabilities returns the calibrated softmax of each row (softmax(logits / temperature), plain softmax without a
// calibration), row-major like Logits (a copy the caller may modify). It is nil for a Result that did not come
// from Classify.
func (r *Result) Probabilities() []float32 {
	if r.probabilities == nil {
		return nil
	}
	return append([]float32(nil), r.probabilities...)
}

// TopK returns the k most probable labels of text i, best first (ties keep index order). k is clamped to
// NumLabels; an out-of-range i or a Result without probabilities gives nil.
func (r *Result) TopK(i, k int) []Score {
	if i < 0 || i >= r.NumTexts || k <= 0 || len(r.probabilities) != r.NumTexts*r.NumLabels {
		return nil
	}
	row := r.probabilities[i*r.NumLabels : (i+1)*r.NumLabels]
	order := make([]int, len(row))
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return row[order[a]] > row[order[b]] })
	k = min(k, len(order))
	scores := make([]Score, k)
	for n, j := range order[:k] {
		label := ""
		if j < len(r.Labels) {
			label = r.Labels[j]
		}
		scores[n] = Score{Index: j, Label: label, Prob: row[j]}
	}
	return scores
}

// copyResult copies a native result into Go memory; the caller still frees the native result.
func copyResult(res *C.LorakitResult) *Result {
	numTexts := int(C.lorakit_result_num_texts(res))
	numLabels := int(C.lorakit_result_num_labels(res))
	cells := numTexts * numLabels
	out := &Result{
		Labels:        make([]string, numLabels),
		NumTexts:      numTexts,
		NumLabels:     numLabels,
		Logits:        copyFloats(C.lorakit_result_logits(res), cells),
		probabilities: copyFloats(C.lorakit_result_probabilities(res), cells),
		TokensIn:      copySizes(C.lorakit_result_tokens_in(res), numTexts),
		TokensUsed:    copySizes(C.lorakit_result_tokens_used(res), numTexts),
		NeedsReview:   copyBools(C.lorakit_result_needs_review(res), numTexts),
		Calibration:   calibrationOf(C.lorakit_result_temperature(res), C.lorakit_result_review_threshold(res)),
	}
	for j := range out.Labels {
		out.Labels[j] = goStringOrEmpty(C.lorakit_result_label(res, C.size_t(j)))
	}
	if C.lorakit_result_has_unsafe_labels(res) {
		out.HasUnsafeLabels = true
		out.Unsafe = copyBools(C.lorakit_result_unsafe(res), numTexts)
		out.UnsafeScore = copyFloats(C.lorakit_result_unsafe_scores(res), numTexts)
	}
	return out
}

func copyEncoding(enc *C.LorakitEncoding) *Encoding {
	numTexts := int(C.lorakit_encoding_num_texts(enc))
	seqLen := int(C.lorakit_encoding_seq_len(enc))
	return &Encoding{
		NumTexts:      numTexts,
		SeqLen:        seqLen,
		InputIDs:      copyInt64s(C.lorakit_encoding_input_ids(enc), numTexts*seqLen),
		AttentionMask: copyInt64s(C.lorakit_encoding_attention_mask(enc), numTexts*seqLen),
	}
}

func copyStrings(list *C.LorakitStrings) []string {
	out := make([]string, int(C.lorakit_strings_len(list)))
	for i := range out {
		out[i] = goStringOrEmpty(C.lorakit_strings_get(list, C.size_t(i)))
	}
	return out
}

func copyFloats(p *C.float, n int) []float32 {
	out := make([]float32, n)
	if p != nil && n > 0 {
		copy(out, unsafe.Slice((*float32)(unsafe.Pointer(p)), n))
	}
	return out
}

func copyBools(p *C.bool, n int) []bool {
	out := make([]bool, n)
	if p != nil && n > 0 {
		copy(out, unsafe.Slice((*bool)(unsafe.Pointer(p)), n))
	}
	return out
}

func copyInt64s(p *C.int64_t, n int) []int64 {
	out := make([]int64, n)
	if p != nil && n > 0 {
		copy(out, unsafe.Slice((*int64)(unsafe.Pointer(p)), n))
	}
	return out
}

func copySizes(p *C.size_t, n int) []int {
	out := make([]int, n)
	if p != nil && n > 0 {
		for i, v := range unsafe.Slice(p, n) {
			out[i] = int(v)
		}
	}
	return out
}

func goStringOrEmpty(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}
