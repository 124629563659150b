package lorakit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// malformedCase is one entry of $LORAKIT_FIXTURES/malformed/cases.json (scripts/make_malformed.py).
type malformedCase struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // the error kind every runtime must report
	Mode string `json:"mode"` // "merged" or "runtime"
	What string `json:"what"`
}

// Every malformed model directory of the shared corpus is refused at load with the sentinel of its kind.
func TestMalformedModelDirsAreRefusedWithTheirKind(t *testing.T) {
	root := lorakittest.FixtureDir(t, "malformed")
	raw, err := os.ReadFile(filepath.Join(root, "cases.json"))
	if err != nil {
		t.Fatalf("the malformed corpus has no cases.json (run `make fixtures`): %v", err)
	}
	var cases []malformedCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatalf("cases.json: %v", err)
	}
	if len(cases) == 0 {
		t.Fatal("cases.json lists no cases (run `make fixtures`)")
	}
	sentinels := map[string]error{"io": ErrIO, "format": ErrFormat, "config": ErrConfig, "shape": ErrShape,
		"unsupported": ErrUnsupported}
	seen := map[string]bool{}
	for _, c := range cases {
		want, known := sentinels[c.Kind]
		if !known || (c.Mode != "merged" && c.Mode != "runtime") || c.Name == "" || seen[c.Name] ||
			filepath.Base(c.Name) != c.Name {
			t.Errorf("cases.json: malformed entry %+v (kind, mode or a unique plain name)", c)
			continue
		}
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			dir := filepath.Join(root, c.Name)
			if info, err := os.Stat(dir); err != nil || !info.IsDir() {
				t.Fatalf("case directory %s missing (run `make fixtures`): %v", dir, err)
			}
			m, err := Load(dir, c.Mode == "merged", Options{Threads: 1})
			if err == nil {
				m.Close()
				t.Fatalf("%s (%s) loaded; want %v", c.What, c.Mode, want)
			}
			if !errors.Is(err, want) {
				t.Errorf("%s (%s): want %v, got %v", c.What, c.Mode, want, err)
			}
		})
	}
}
