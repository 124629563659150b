package lorakit

/*
#include <stdlib.h>
#include "lorakit.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// TaskInfo describes one task of a Model.
type TaskInfo struct {
	Name           string   // the adapter name; for Load, the manifest name
	Task           string   // manifest task kind: one of the Task* constants
	Architecture   string   // the encoder's model_type
	Labels         []string // label names (IOB2 tags for token classification) in index order; none for embeddings
	MaxSeqLen      int      // tokens per text; longer texts are truncated (see Result.TokensIn)
	RuntimeAdapter bool     // true when the adapter is applied at runtime, false for merged weights
	UnsafeLabels   []string // sequence classification: the labels the manifest declares unsafe (nil when none)
	Dim            int      // embedding: the vector width (0 for other tasks)
	// Calibration (sequence classification) is the manifest's: temperature 1 and no threshold without one.
	Calibration Calibration
}

// Task kinds (TaskInfo.Task). Each is run by its own call: Classify, ExtractEntities, Embed; a generative
// classification task by Classify (its manifest labels) and ClassifyFewShot.
const (
	TaskSequenceClassification   = "sequence_classification"
	TaskTokenClassification      = "token_classification"
	TaskEmbedding                = "embedding"
	TaskGenerativeClassification = "generative_classification"
)

// Architecture is one encoder family the native core serves.
type Architecture struct {
	ModelType string   // config.json model_type, e.g. "roberta"
	Aliases   []string // other model_type values served by the same code, e.g. "xlm-roberta"
}

// AddAdapter adds the adapter of the lorakit model directory modelDir as task name. It refuses merged
// weights (ErrInput), a directory trained on another base (ErrConfig) and a name already in use (ErrInput).
func (m *Model) AddAdapter(name, modelDir string) error {
	if err := m.life.enter(); err != nil {
		return err
	}
	defer m.life.leave()
	cName, err := cString(name, "adapter name")
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cName))
	cDir, err := cString(modelDir, "model directory")
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cDir))

	var message *C.char
	status := C.lorakit_model_add_adapter(m.handle, cName, cDir, &message)
	runtime.KeepAlive(m)
	return statusError(status, message)
}

// RemoveAdapter removes the named task; it returns false when there was none (or the model is closed).
func (m *Model) RemoveAdapter(name string) bool {
	if err := m.life.enter(); err != nil {
		return false
	}
	defer m.life.leave()
	cName, err := cString(name, "adapter name")
	if err != nil {
		return false
	}
	defer C.free(unsafe.Pointer(cName))

	var removed C.bool
	var message *C.char
	status := C.lorakit_model_remove_adapter(m.handle, cName, &removed, &message)
	runtime.KeepAlive(m)
	return statusError(status, message) == nil && bool(removed)
}

// Adapters lists the task names, sorted; for Load it includes the directory's own task (nil once closed).
func (m *Model) Adapters() []string {
	if err := m.life.enter(); err != nil {
		return nil
	}
	defer m.life.leave()

	var list *C.LorakitStrings
	var message *C.char
	status := C.lorakit_model_adapters(m.handle, &list, &message)
	runtime.KeepAlive(m)
	if statusError(status, message) != nil {
		return nil
	}
	defer C.lorakit_strings_free(list)
	return copyStrings(list)
}

// TaskInfo describes the named adapter ("" = the default task); an unknown name is ErrInput.
func (m *Model) TaskInfo(adapter string) (*TaskInfo, error) {
	if err := m.life.enter(); err != nil {
		return nil, err
	}
	defer m.life.leave()
	cAdapter, err := cAdapterName(adapter)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cAdapter))

	var info *C.LorakitTaskInfo
	var message *C.char
	status := C.lorakit_model_task_info(m.handle, cAdapter, &info, &message)
	runtime.KeepAlive(m)
	if err := statusError(status, message); err != nil {
		return nil, err
	}
	defer C.lorakit_task_info_free(info)
	out := &TaskInfo{
		Name:           goStringOrEmpty(C.lorakit_task_info_name(info)),
		Task:           goStringOrEmpty(C.lorakit_task_info_task(info)),
		Architecture:   goStringOrEmpty(C.lorakit_task_info_architecture(info)),
		Labels:         make([]string, int(C.lorakit_task_info_num_labels(info))),
		MaxSeqLen:      int(C.lorakit_task_info_max_seq_len(info)),
		RuntimeAdapter: bool(C.lorakit_task_info_runtime_adapter(info)),
		Dim:            int(C.lorakit_task_info_dim(info)),
		Calibration: calibrationOf(C.lorakit_task_info_temperature(info),
			C.lorakit_task_info_review_threshold(info)),
	}
	for i := range out.Labels {
		out.Labels[i] = goStringOrEmpty(C.lorakit_task_info_label(info, C.size_t(i)))
	}
	for i := range int(C.lorakit_task_info_num_unsafe_labels(info)) {
		out.UnsafeLabels = append(out.UnsafeLabels, goStringOrEmpty(C.lorakit_task_info_unsafe_label(info, C.size_t(i))))
	}
	return out, nil
}

// Architectures lists the encoder families the native core serves, in the core's order. Loading any other
// model_type fails with ErrUnsupported.
func Architectures() ([]Architecture, error) {
	var list *C.LorakitStrings
	var message *C.char
	if err := statusError(C.lorakit_architectures(&list, &message), message); err != nil {
		return nil, err
	}
	defer C.lorakit_strings_free(list)
	names := copyStrings(list)
	out := make([]Architecture, len(names))
	for i, name := range names {
		aliases, err := architectureAliases(name)
		if err != nil {
			return nil, err
		}
		out[i] = Architecture{ModelType: name, Aliases: aliases}
	}
	return out, nil
}

func architectureAliases(modelType string) ([]string, error) {
	cType, err := cString(modelType, "model_type")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cType))
	var list *C.LorakitStrings
	var message *C.char
	if err := statusError(C.lorakit_architecture_aliases(cType, &list, &message), message); err != nil {
		return nil, err
	}
	defer C.lorakit_strings_free(list)
	return copyStrings(list), nil
}

// cAdapterName is NULL for "" (the default task), otherwise a C copy the caller frees.
func cAdapterName(adapter string) (*C.char, error) {
	if adapter == "" {
		return nil, nil
	}
	return cString(adapter, "adapter name")
}
