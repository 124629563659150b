package lorakit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

func TestEveryStatusMapsToItsSentinel(t *testing.T) {
	cases := map[int]error{
		statusIO: ErrIO, statusFormat: ErrFormat, statusConfig: ErrConfig, statusShape: ErrShape,
		statusUnsupported: ErrUnsupported, statusInput: ErrInput, statusCompute: ErrCompute,
		statusInternal: ErrInternal,
	}
	for status, want := range cases {
		err := errorFor(status, "detail text")
		if !errors.Is(err, want) || !strings.HasSuffix(err.Error(), ": detail text") {
			t.Errorf("status %d: got %v, want %v wrapping the detail", status, err, want)
		}
		for _, other := range cases {
			if other != want && errors.Is(err, other) {
				t.Errorf("status %d also matches %v", status, other)
			}
		}
	}
	if err := errorFor(statusOK, "ignored"); err != nil {
		t.Errorf("OK must be nil, got %v", err)
	}
	if err := errorFor(42, "x"); !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "unknown status 42") {
		t.Errorf("unknown status: %v", err)
	}
}

func TestLoadErrorsAreTyped(t *testing.T) {
	fixture := lorakittest.FixtureDir(t, "tiny_bert_lora_a")

	_, err := Load(filepath.Join(t.TempDir(), "absent"), true, Options{})
	if !errors.Is(err, ErrIO) {
		t.Errorf("missing directory: want ErrIO, got %v", err)
	}
	if _, err := Load("a\x00b", true, Options{}); !errors.Is(err, ErrInput) {
		t.Errorf("NUL in path: want ErrInput, got %v", err)
	}
	if _, err := Load(fixture, true, Options{Threads: -1}); !errors.Is(err, ErrInput) {
		t.Errorf("negative threads: want ErrInput, got %v", err)
	}
	if _, err := Load(fixture, true, Options{MaxBatch: -5}); !errors.Is(err, ErrInput) {
		t.Errorf("negative max batch: want ErrInput, got %v", err)
	}
	for _, device := range []string{"tpu", "cuda:x"} {
		if _, err := Load(fixture, true, Options{Device: device}); !errors.Is(err, ErrInput) {
			t.Errorf("device %q: want ErrInput, got %v", device, err)
		}
	}
	if _, err := LoadBase(filepath.Join(t.TempDir(), "absent"), Options{}); !errors.Is(err, ErrIO) {
		t.Errorf("missing base directory: want ErrIO, got %v", err)
	}
}

func TestTamperedFilesAreFormatErrors(t *testing.T) {
	fixture := lorakittest.FixtureDir(t, "tiny_bert_lora_a")

	// One changed weight without updating lorakit.json: the checksum check refuses it.
	tampered := lorakittest.CopyModelDir(t, fixture)
	lorakittest.AddToFloat(t, tampered, "model.safetensors", "classifier.bias", 0, 0.5)
	_, err := Load(tampered, true, Options{})
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("checksum mismatch: want ErrFormat naming the file, got %v", err)
	}
	// The same file loads when checksums are skipped: the refusal above came from the checksum.
	m, err := Load(tampered, true, Options{SkipChecksums: true})
	if err != nil {
		t.Fatalf("SkipChecksums: %v", err)
	}
	m.Close()

	// A truncated weights file is malformed even with checksums skipped.
	truncated := lorakittest.CopyModelDir(t, fixture)
	weights := filepath.Join(truncated, "model.safetensors")
	raw, err := os.ReadFile(weights)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(weights, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(truncated, true, Options{SkipChecksums: true}); !errors.Is(err, ErrFormat) {
		t.Errorf("truncated safetensors: want ErrFormat, got %v", err)
	}
}
