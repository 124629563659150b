package lorakit

/*
#include <stdlib.h>
#include "lorakit.h"
*/
import "C"

import "unsafe"

// Entity is one span a token-classification task found in a text. Start and End count Unicode code points
// (runes) of the input, End exclusive; Text is that part of the input.
type Entity struct {
	Type  string  `json:"type"` // "PERSON" for the tags B-PERSON / I-PERSON
	Start int     `json:"start"`
	End   int     `json:"end"`
	Text  string  `json:"text"`
	Score float32 `json:"score"` // mean probability of the entity's word tags
}

// EntityResult holds the outcome of token classification (PII / NER) on a batch.
type EntityResult struct {
	Labels    []string // IOB2 tag names, index order
	NumTexts  int
	NumLabels int
	Entities  [][]Entity // per text, in order of appearance (empty, not nil, when none)
	// TokenLogits per text: row-major [TokensUsed[i], NumLabels], special tokens included.
	TokenLogits [][]float32
	TokensIn    []int // per text, tokens before truncation
	TokensUsed  []int // per text, tokens used
}

// ExtractEntities runs the default task, which must be a token-classification one, on a batch of texts.
func (m *Model) ExtractEntities(texts []string) (*EntityResult, error) {
	return m.ExtractEntitiesWith("", texts)
}

// ExtractEntitiesWith runs the named adapter ("" = the default task). A task of another kind is ErrInput
// naming the call it needs.
func (m *Model) ExtractEntitiesWith(adapter string, texts []string) (*EntityResult, error) {
	var out *EntityResult
	err := m.taskCall(adapter, texts, func(cAdapter *C.char, batch *cTexts) error {
		var res *C.LorakitEntities
		var message *C.char
		status := C.lorakit_model_extract_entities(m.handle, cAdapter, batch.pointer(), batch.count(), &res,
			&message)
		if err := statusError(status, message); err != nil {
			return err
		}
		defer C.lorakit_entities_free(res)
		out = copyEntities(res)
		return nil
	})
	return out, err
}

// copyEntities copies a native entities result into Go memory; the caller still frees the native result.
func copyEntities(res *C.LorakitEntities) *EntityResult {
	numTexts := int(C.lorakit_entities_num_texts(res))
	numLabels := int(C.lorakit_entities_num_labels(res))
	out := &EntityResult{
		Labels:      make([]string, numLabels),
		NumTexts:    numTexts,
		NumLabels:   numLabels,
		Entities:    make([][]Entity, numTexts),
		TokenLogits: make([][]float32, numTexts),
		TokensIn:    copySizes(C.lorakit_entities_tokens_in(res), numTexts),
		TokensUsed:  copySizes(C.lorakit_entities_tokens_used(res), numTexts),
	}
	for j := range out.Labels {
		out.Labels[j] = goStringOrEmpty(C.lorakit_entities_label(res, C.size_t(j)))
	}
	for i := range numTexts {
		row := C.size_t(i)
		out.TokenLogits[i] = copyFloats(C.lorakit_entities_token_logits(res, row), out.TokensUsed[i]*numLabels)
		count := int(C.lorakit_entities_count(res, row))
		items := C.lorakit_entities_get(res, row)
		out.Entities[i] = make([]Entity, 0, count)
		if items == nil {
			continue
		}
		for _, e := range unsafe.Slice(items, count) {
			out.Entities[i] = append(out.Entities[i], Entity{
				Type:  goStringOrEmpty(e.entity_type),
				Start: int(e.start),
				End:   int(e.end),
				Text:  C.GoStringN(e.text.data, C.int(e.text.len)),
				Score: float32(e.score),
			})
		}
	}
	return out
}

// Mask returns text with every entity span replaced by "[TYPE]", as the native core masks (spans in runes;
// overlapping or out-of-range spans are left alone). Only Type, Start and End of each entity are read.
func Mask(text string, entities []Entity) (string, error) {
	items := make([]C.LorakitEntity, len(entities))
	defer func() {
		for _, e := range items {
			C.free(unsafe.Pointer(e.entity_type))
		}
	}()
	for i, e := range entities {
		if e.Start < 0 || e.End < 0 {
			return "", inputError("entity %d has a negative span [%d, %d)", i, e.Start, e.End)
		}
		cType, err := cString(e.Type, "entity type")
		if err != nil {
			return "", err
		}
		items[i] = C.LorakitEntity{entity_type: cType, start: C.size_t(e.Start), end: C.size_t(e.End)}
	}
	batch := newCTexts([]string{text})
	defer batch.free()
	var first *C.LorakitEntity
	if len(items) > 0 {
		first = &items[0]
	}
	var out *C.LorakitBytes
	var message *C.char
	status := C.lorakit_mask_entities(batch.entries[0], first, C.size_t(len(items)), &out, &message)
	if err := statusError(status, message); err != nil {
		return "", err
	}
	defer C.lorakit_bytes_free(out)
	return C.GoStringN(C.lorakit_bytes_data(out), C.int(C.lorakit_bytes_len(out))), nil
}
