// Package discovery finds lorakit model directories under a models root, validates their manifests and
// checksums, and plans how to load them: adapters grouped by base so each base is loaded once, merged
// models on their own, and one winner per serving task chosen by a configurable architecture priority.
//
// Task and architecture come from lorakit.json only; directory names are shown, never interpreted.
// Discovery is pure Go (no cgo): loading is done by the caller.
package discovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// ManifestFile is the name of the manifest inside every lorakit model directory.
const ManifestFile = "lorakit.json"

// FormatVersion is the only manifest format this package understands (docs/FORMAT.md).
const FormatVersion = 1

// maxManifestBytes bounds how much of a manifest is read: real manifests are a few KiB.
const maxManifestBytes = 4 << 20

// Sentinel errors; every error from this package wraps one of them, so errors.Is works.
var (
	ErrManifest    = errors.New("invalid manifest")
	ErrMissingFile = errors.New("missing file")
	ErrChecksum    = errors.New("checksum mismatch")
	ErrBase        = errors.New("base model unavailable")
	ErrUnsupported = errors.New("unsupported model")
)

// Manifest mirrors lorakit.json (format_version 1). Unknown fields are tolerated so newer writers can add
// information; the fields below are validated by Validate.
type Manifest struct {
	FormatVersion int      `json:"format_version"`
	Name          string   `json:"name"`
	Task          string   `json:"task"`
	Architecture  string   `json:"architecture"`
	Base          BaseRef  `json:"base"`
	Adapter       *Adapter `json:"adapter"`
	Labels        []string `json:"labels"`
	MaxSeqLen     int      `json:"max_seq_len"`
	Pooling       string   `json:"pooling,omitempty"`
	// UnsafeLabels (sequence classification) are the labels that mean "unsafe"; each is one of Labels.
	UnsafeLabels []string `json:"unsafe_labels,omitempty"`
	// Normalize (embedding) says the vectors are L2-normalised.
	Normalize *bool `json:"normalize,omitempty"`
	// Prompt (generative classification) is the prompt template; the core reads its fields, discovery only
	// requires it to be an object.
	Prompt json.RawMessage `json:"prompt,omitempty"`
	// Calibration (sequence classification, optional) is the temperature scaling and review threshold every
	// runtime applies (docs/FORMAT.md "Calibration").
	Calibration    *Calibration      `json:"calibration,omitempty"`
	Files          map[string]string `json:"files"`
	CreatedAt      string            `json:"created_at,omitempty"`
	LorakitVersion string            `json:"lorakit_version,omitempty"`
}

// Calibration is lorakit.json "calibration": probabilities are softmax(logits / Temperature) and a text needs
// review when its top probability is below ReviewThreshold (nil: never). TargetPrecision and FittedOn record what
// the threshold was chosen for.
type Calibration struct {
	Temperature     *float64 `json:"temperature"`
	ReviewThreshold *float64 `json:"review_threshold"`
	TargetPrecision *float64 `json:"target_precision,omitempty"`
	FittedOn        *string  `json:"fitted_on,omitempty"`
}

// validate applies the format's ranges; the runtimes divide in float32, so the temperature must be finite and
// positive there too.
func (c *Calibration) validate() error {
	if c.Temperature == nil {
		return errors.New("calibration.temperature is missing (a finite number > 0)")
	}
	t := *c.Temperature
	if narrowed := float32(t); !(t > 0) || math.IsInf(t, 0) || !(narrowed > 0) || math.IsInf(float64(narrowed), 0) {
		return fmt.Errorf("calibration.temperature must be finite and > 0 as a 32-bit float, got %g", t)
	}
	if r := c.ReviewThreshold; r != nil && !(*r >= 0 && *r <= 1) {
		return fmt.Errorf("calibration.review_threshold must be null or in [0, 1], got %g", *r)
	}
	if p := c.TargetPrecision; p != nil && !(*p > 0 && *p <= 1) {
		return fmt.Errorf("calibration.target_precision must be in (0, 1], got %g", *p)
	}
	return nil
}

// BaseRef names the base model an adapter was trained on.
type BaseRef struct {
	Path          string `json:"path"`
	ID            string `json:"id"`
	WeightsSHA256 string `json:"weights_sha256"`
}

// Adapter describes the PEFT LoRA adapter; nil in the manifest means a merged-only (full fine-tuned) model.
type Adapter struct {
	Type          string   `json:"type"`
	R             int      `json:"r"`
	LoraAlpha     float64  `json:"lora_alpha"`
	UseRslora     bool     `json:"use_rslora"`
	TargetModules []string `json:"target_modules"`
	ModulesToSave []string `json:"modules_to_save"`
}

// Manifest task kinds (docs/FORMAT.md "Tasks").
const (
	TaskSequenceClassification = "sequence_classification"
	TaskTokenClassification    = "token_classification"
	TaskEmbedding              = "embedding"
	// TaskGenerativeClassification is a causal LM scoring each label's answer (docs/generative.md).
	TaskGenerativeClassification = "generative_classification"
)

// KnownTasks are the manifest task kinds of format_version 1 (docs/FORMAT.md).
var KnownTasks = []string{TaskSequenceClassification, TaskTokenClassification, TaskEmbedding, TaskGenerativeClassification}

// ServedTasks are the task kinds a native loader runs (Scan's default).
var ServedTasks = []string{TaskSequenceClassification, TaskTokenClassification, TaskEmbedding, TaskGenerativeClassification}

// namePattern keeps serving names safe in URLs, JSON, logs and metric labels.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

var (
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
	archPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
)

// ValidName reports whether s may be used as a model or serving task name.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// ReadManifest reads and validates dir/lorakit.json.
func ReadManifest(dir string) (*Manifest, error) {
	name := filepath.Join(dir, ManifestFile)
	if _, err := regularFile(name); errors.Is(err, ErrUnsafePath) {
		return nil, err
	}
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s not found", ErrMissingFile, ManifestFile)
		}
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrManifest, ManifestFile, err)
	}
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrManifest, ManifestFile, maxManifestBytes)
	}
	return ParseManifest(data)
}

// ParseManifest decodes and validates manifest JSON.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s is not valid JSON: %v", ErrManifest, ManifestFile, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every field the loaders rely on and returns an ErrManifest / ErrUnsupported error naming
// the first problem.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrManifest, fmt.Sprintf(format, args...))
	}
	if m.FormatVersion != FormatVersion {
		return fmt.Errorf("%w: format_version %d (this router reads %d)", ErrUnsupported, m.FormatVersion, FormatVersion)
	}
	if !ValidName(m.Name) {
		return bad("name %q must match %s", m.Name, namePattern)
	}
	if !contains(KnownTasks, m.Task) {
		return bad("unknown task %q (known: %s)", m.Task, strings.Join(KnownTasks, ", "))
	}
	if !archPattern.MatchString(m.Architecture) {
		return bad("architecture %q must be a lower-case identifier", m.Architecture)
	}
	if len(m.Labels) == 0 && m.Task != TaskEmbedding {
		return bad("labels must not be empty for %s", m.Task)
	}
	seen := make(map[string]bool, len(m.Labels))
	for i, l := range m.Labels {
		if l == "" {
			return bad("labels[%d] is empty", i)
		}
		if seen[l] {
			return bad("label %q appears twice", l)
		}
		seen[l] = true
	}
	for _, l := range m.UnsafeLabels {
		if !seen[l] {
			return bad("unsafe label %q is not one of the labels", l)
		}
	}
	if m.Task == TaskGenerativeClassification {
		var prompt map[string]any
		if json.Unmarshal(m.Prompt, &prompt) != nil || prompt == nil {
			return bad("prompt must be an object for %s", m.Task)
		}
	}
	if m.Calibration != nil {
		if m.Task != TaskSequenceClassification {
			return bad("calibration belongs to task %s, not %s; remove it", TaskSequenceClassification, m.Task)
		}
		if err := m.Calibration.validate(); err != nil {
			return bad("%v", err)
		}
	}
	if m.MaxSeqLen <= 0 {
		return bad("max_seq_len must be positive, got %d", m.MaxSeqLen)
	}
	if len(m.Files) == 0 {
		return bad("files (sha256 table) must not be empty")
	}
	for rel, sum := range m.Files {
		if err := checkRelPath(rel); err != nil {
			return bad("files: %v", err)
		}
		if !sha256Pattern.MatchString(sum) {
			return bad("files[%q]: %q is not a lower-case hex sha256", rel, sum)
		}
	}
	if m.Adapter != nil {
		if m.Adapter.Type != "lora" {
			return fmt.Errorf("%w: adapter type %q (only lora)", ErrUnsupported, m.Adapter.Type)
		}
		if m.Adapter.R <= 0 {
			return bad("adapter.r must be positive, got %d", m.Adapter.R)
		}
		if m.Base.Path == "" {
			return bad("base.path is required for an adapter model")
		}
		if !sha256Pattern.MatchString(m.Base.WeightsSHA256) {
			return bad("base.weights_sha256 %q is not a lower-case hex sha256", m.Base.WeightsSHA256)
		}
	}
	return m.checkRequiredFiles()
}

// checkRequiredFiles makes sure every file a loader reads is listed, so it is covered by a checksum.
func (m *Manifest) checkRequiredFiles() error {
	required := []string{"config.json", "tokenizer.json"}
	if m.Adapter == nil {
		required = append(required, "model.safetensors")
	} else {
		required = append(required, "adapter_config.json", "adapter_model.safetensors")
	}
	for _, rel := range required {
		if _, ok := m.Files[rel]; !ok {
			return fmt.Errorf("%w: files does not list %s", ErrManifest, rel)
		}
	}
	return nil
}

// Lists reports whether the manifest's sha256 table names rel.
func (m *Manifest) Lists(rel string) bool {
	_, ok := m.Files[rel]
	return ok
}

// checkRelPath refuses paths that could leave the model directory or alias the manifest.
func checkRelPath(rel string) error {
	switch {
	case rel == "":
		return errors.New("empty path")
	case strings.HasPrefix(rel, "/") || strings.Contains(rel, `\`):
		return fmt.Errorf("%q must be a relative path with '/' separators", rel)
	case path.Clean(rel) != rel:
		return fmt.Errorf("%q is not a clean path", rel)
	case rel == ".." || strings.HasPrefix(rel, "../"):
		return fmt.Errorf("%q leaves the model directory", rel)
	case rel == ManifestFile:
		return fmt.Errorf("%q cannot checksum itself", rel)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
