package lorakit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// A copied adapter directory whose recorded base is gone finds it on LORAKIT_BASES by id and sha256, in the
// core and in discovery (through Options.ResolveBase), and is served unmerged.
func TestCopiedAdapterFindsItsBaseOnTheSearchPath(t *testing.T) {
	root := t.TempDir()
	model := filepath.Join(root, "models", "intent")
	lorakittest.CopyDir(t, lorakittest.FixtureDir(t, "tiny_bert_lora_a"), model)
	lorakittest.EditManifest(t, model, func(m map[string]any) { m["base"].(map[string]any)["path"] = "../../gone" })
	bases := filepath.Join(root, "bases")
	// The fixture's base id is "lorakit-fixtures/tiny-bert"; a decoy with the same name but other weights.
	lorakittest.CopyDir(t, lorakittest.FixtureDir(t, "tiny_roberta_base"), filepath.Join(root, "decoy", "tiny-bert"))
	lorakittest.CopyDir(t, lorakittest.FixtureDir(t, "tiny_bert_base"), filepath.Join(bases, "lorakit-fixtures", "tiny-bert"))

	t.Setenv(BasesEnv, "")
	if _, err := ResolveBase(model); !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), BasesEnv) {
		t.Fatalf("no search path: %v, want ErrIO naming %s", err, BasesEnv)
	}
	t.Setenv(BasesEnv, filepath.Join(root, "decoy")+string(os.PathListSeparator)+bases)
	got, err := ResolveBase(model)
	if want := filepath.Join(bases, "lorakit-fixtures", "tiny-bert"); err != nil || got != want {
		t.Fatalf("ResolveBase = %q, %v; want %q", got, err, want)
	}
	m := loadModel(t, model, false, Options{Threads: 1})
	if report, err := loadGolden(t, model).CheckModel(m); err != nil || !report.OK {
		t.Errorf("unmerged via the search path: %+v, %v", report, err)
	}

	cat, err := discovery.Scan(filepath.Dir(model), discovery.Options{ResolveBase: ResolveBase})
	if err != nil || len(cat.Models) != 1 {
		t.Fatalf("scan: %v, %+v", err, cat)
	}
	if d := cat.Models[0]; d.Mode != discovery.ModeAdapter || d.BasePath != got {
		t.Errorf("discovery mode %q base %q, want adapter on %q (note %q)", d.Mode, d.BasePath, got, d.Note)
	}
	cat, err = discovery.Scan(filepath.Dir(model), discovery.Options{})
	if err != nil || len(cat.Models) != 1 || cat.Models[0].Mode != discovery.ModeMerged {
		t.Errorf("without the resolver the recorded path is all there is: %v, %+v", err, cat)
	}
}
