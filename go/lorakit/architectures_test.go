package lorakit

import (
	"testing"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// Every architecture fixture reproduces its golden vectors through CGO: merged, runtime, and as an adapter
// added to its base loaded on its own.
func TestEveryArchitectureMatchesGolden(t *testing.T) {
	for _, f := range lorakittest.ArchFixtures(t) {
		dir := lorakittest.FixtureDir(t, f.Lora)
		g := loadGolden(t, dir)
		manifest, err := discovery.ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, merged := range []bool{true, false} {
			m := loadModel(t, dir, merged, Options{Threads: 1})
			if m.Architecture() != manifest.Architecture {
				t.Errorf("%s: architecture %q, manifest %q", f.Name, m.Architecture(), manifest.Architecture)
			}
			report, err := g.CheckModel(m)
			if err != nil || !report.OK {
				t.Errorf("%s merged=%v: %+v, %v", f.Name, merged, report, err)
			}
		}
		base, err := LoadBase(lorakittest.FixtureDir(t, f.Base), Options{Threads: 1})
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if err := base.AddAdapter("task", dir); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		report, err := g.CheckAdapter(base, "task")
		if err != nil || !report.OK {
			t.Errorf("%s on its base: %+v, %v", f.Name, report, err)
		}
		base.Close()
	}
}

// Each architecture the core serves has a fixture, so the test above covers all of them.
func TestEveryServedArchitectureHasAFixture(t *testing.T) {
	covered := map[string]bool{"bert": true}  // the tiny_bert_* fixtures
	for _, name := range generativeFixtures { // TestGenerativeFixturesReproduceTheirGolden
		m, err := discovery.ReadManifest(lorakittest.FixtureDir(t, name))
		if err != nil {
			t.Fatal(err)
		}
		covered[m.Architecture] = true
	}
	for _, f := range lorakittest.ArchFixtures(t) {
		m, err := discovery.ReadManifest(lorakittest.FixtureDir(t, f.Lora))
		if err != nil {
			t.Fatal(err)
		}
		covered[m.Architecture] = true
	}
	archs, err := Architectures()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range archs {
		if !covered[a.ModelType] {
			t.Errorf("the core serves %q but no fixture has it (scripts/arch_fixtures.py)", a.ModelType)
		}
	}
}
