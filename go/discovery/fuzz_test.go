package discovery_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/discovery/discoverytest"
)

// manifestErrors are the typed errors a manifest can be skipped with.
var manifestErrors = []error{discovery.ErrManifest, discovery.ErrMissingFile, discovery.ErrChecksum,
	discovery.ErrBase, discovery.ErrUnsupported, discovery.ErrUnsafePath}

// FuzzManifest scans a model directory whose lorakit.json is arbitrary bytes: the scan never panics, a
// refused directory is skipped with one of the typed errors, and an accepted manifest is one that parses
// on its own, names a valid task and lists only files inside its directory. Seeds: the fixtures' manifests
// (when LORAKIT_FIXTURES is set) and the test suite's own.
func FuzzManifest(f *testing.F) {
	if root := os.Getenv("LORAKIT_FIXTURES"); root != "" {
		seeds, _ := filepath.Glob(filepath.Join(root, "*", discovery.ManifestFile))
		for _, name := range seeds {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
	seedRoot := f.TempDir()
	for id, spec := range map[string]discoverytest.Spec{
		"plain":    {},
		"adapter":  {Adapter: true, BasePath: "../base", BaseSHA: strings.Repeat("0", 64), AlsoMerged: true, Golden: true},
		"token":    {Task: "token_classification", Labels: []string{"O", "B-PER", "I-PER"}},
		"embedder": {Task: "embedding", Labels: []string{}},
	} {
		data, err := os.ReadFile(filepath.Join(discoverytest.WriteModel(f, seedRoot, id, spec), discovery.ManifestFile))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"format_version": 1, "files": {"../../etc/passwd": "00"}}`))
	f.Add([]byte(`[]`))
	// One model directory per process, its manifest rewritten by each input (inputs run serially).
	root := f.TempDir()
	dir := discoverytest.WriteModel(f, root, "m", discoverytest.Spec{Golden: true})
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if err := os.WriteFile(filepath.Join(dir, discovery.ManifestFile), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		cat, err := discovery.Scan(root, discovery.Options{})
		if err != nil {
			t.Fatalf("scan failed as a whole: %v", err)
		}
		if len(cat.Skipped) == 1 {
			err := cat.Skipped[0].Err
			for _, kind := range manifestErrors {
				if errors.Is(err, kind) {
					return
				}
			}
			t.Fatalf("untyped refusal: %v", err)
		}
		if len(cat.Models) != 1 {
			t.Fatalf("models %d, skipped %d", len(cat.Models), len(cat.Skipped))
		}
		m := cat.Models[0]
		if _, err := discovery.ParseManifest(manifest); err != nil {
			t.Fatalf("served a manifest that does not parse on its own: %v", err)
		}
		if !discovery.ValidName(m.ServingTask) {
			t.Fatalf("serving task %q", m.ServingTask)
		}
		for rel := range m.Manifest.Files {
			path := filepath.Join(dir, filepath.FromSlash(rel))
			if r, err := filepath.Rel(dir, path); err != nil || strings.HasPrefix(r, "..") {
				t.Fatalf("listed file %q leaves the model directory", rel)
			}
		}
	})
}
