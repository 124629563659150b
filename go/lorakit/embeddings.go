package lorakit

/*
#include "lorakit.h"
*/
import "C"

// Embeddings are sentence vectors of a batch, pooled and normalised as the model's manifest says (normalised
// vectors have length 1, others do not: compare with a real cosine).
type Embeddings struct {
	NumTexts   int
	Dim        int
	Values     []float32 // row-major [NumTexts, Dim]
	TokensIn   []int     // per text, tokens before truncation
	TokensUsed []int     // per text, tokens used
}

// Row returns the vector of text i (a view into Values), nil when i is out of range.
func (e *Embeddings) Row(i int) []float32 {
	if i < 0 || i >= e.NumTexts || len(e.Values) != e.NumTexts*e.Dim {
		return nil
	}
	return e.Values[i*e.Dim : (i+1)*e.Dim : (i+1)*e.Dim]
}

// Embed runs the default task, which must be an embedding one, on a batch of texts.
func (m *Model) Embed(texts []string) (*Embeddings, error) { return m.EmbedWith("", texts) }

// EmbedWith runs the named adapter ("" = the default task). A task of another kind is ErrInput naming the
// call it needs.
func (m *Model) EmbedWith(adapter string, texts []string) (*Embeddings, error) {
	return m.matrixCall(adapter, texts, func(a *C.char, batch *cTexts, res **C.LorakitEmbeddings, msg **C.char) C.LorakitStatus {
		return C.lorakit_model_embed(m.handle, a, batch.pointer(), batch.count(), res, msg)
	})
}

// matrixCall runs a native call that answers a [texts, width] matrix (embeddings, next-token logits) and copies
// it into Go memory.
func (m *Model) matrixCall(adapter string, texts []string,
	call func(*C.char, *cTexts, **C.LorakitEmbeddings, **C.char) C.LorakitStatus) (*Embeddings, error) {
	var out *Embeddings
	err := m.taskCall(adapter, texts, func(cAdapter *C.char, batch *cTexts) error {
		var res *C.LorakitEmbeddings
		var message *C.char
		if err := statusError(call(cAdapter, batch, &res, &message), message); err != nil {
			return err
		}
		defer C.lorakit_embeddings_free(res)
		out = copyEmbeddings(res)
		return nil
	})
	return out, err
}

// copyEmbeddings copies a native matrix result into Go memory; the caller still frees the native result.
func copyEmbeddings(res *C.LorakitEmbeddings) *Embeddings {
	numTexts := int(C.lorakit_embeddings_num_texts(res))
	dim := int(C.lorakit_embeddings_dim(res))
	return &Embeddings{
		NumTexts:   numTexts,
		Dim:        dim,
		Values:     copyFloats(C.lorakit_embeddings_values(res), numTexts*dim),
		TokensIn:   copySizes(C.lorakit_embeddings_tokens_in(res), numTexts),
		TokensUsed: copySizes(C.lorakit_embeddings_tokens_used(res), numTexts),
	}
}
