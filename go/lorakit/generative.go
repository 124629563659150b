package lorakit

/*
#include "lorakit.h"
*/
import "C"

// Generative classification (docs/generative.md): a causal LM scores every label's answer after a prompt
// holding the labels and the document. Classify runs it over the manifest's labels; ClassifyFewShot adds
// labelled examples to the prompt and may choose among other labels.

// Example is one labelled document of a few-shot prompt.
type Example struct {
	Document string `json:"document"`
	Label    string `json:"label"`
}

// ClassifyFewShot classifies text with the default task, which must be a generative one, with examples in
// its prompt (in order). labels is the label set to choose from; empty means the task's labels followed by
// each example label not among them. The Result has one row; its Labels are the label set used, its Logits
// the labels' answer log-probabilities. A prompt longer than the task's MaxSeqLen is ErrInput.
func (m *Model) ClassifyFewShot(text string, examples []Example, labels []string) (*Result, error) {
	return m.ClassifyFewShotWith("", text, examples, labels)
}

// ClassifyFewShotWith is ClassifyFewShot with the named adapter ("" = the default task).
func (m *Model) ClassifyFewShotWith(adapter, text string, examples []Example, labels []string) (*Result, error) {
	// One C batch holds everything: the text, then the documents, the example labels and the labels.
	n := len(examples)
	all := make([]string, 0, 1+2*n+len(labels))
	all = append(all, text)
	for _, ex := range examples {
		all = append(all, ex.Document)
	}
	for _, ex := range examples {
		all = append(all, ex.Label)
	}
	all = append(all, labels...)
	var out *Result
	err := m.taskCall(adapter, all, func(cAdapter *C.char, batch *cTexts) error {
		var res *C.LorakitResult
		var message *C.char
		status := C.lorakit_model_classify_fewshot(m.handle, cAdapter, batch.entries[0], batch.at(1, n),
			batch.at(1+n, n), C.size_t(n), batch.at(1+2*n, len(labels)), C.size_t(len(labels)), &res, &message)
		if err := statusError(status, message); err != nil {
			return err
		}
		defer C.lorakit_result_free(res)
		out = copyResult(res)
		return nil
	})
	return out, err
}

// NextTokenLogits returns, for each text, the logits of the token after its prompt (the prompt Classify
// scores, without examples) with the default generative task: Dim is the vocabulary size. Golden checks
// compare them with the torch reference.
func (m *Model) NextTokenLogits(texts []string) (*Embeddings, error) {
	return m.NextTokenLogitsWith("", texts)
}

// NextTokenLogitsWith is NextTokenLogits with the named adapter ("" = the default task).
func (m *Model) NextTokenLogitsWith(adapter string, texts []string) (*Embeddings, error) {
	return m.matrixCall(adapter, texts, func(a *C.char, batch *cTexts, res **C.LorakitEmbeddings, msg **C.char) C.LorakitStatus {
		return C.lorakit_model_next_token_logits(m.handle, a, batch.pointer(), batch.count(), res, msg)
	})
}
