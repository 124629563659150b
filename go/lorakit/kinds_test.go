package lorakit

import (
	"fmt"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// fixtureOf returns the first task fixture of kind task; the list must hold one.
func fixtureOf(t *testing.T, task string) lorakittest.TaskFixture {
	t.Helper()
	for _, f := range lorakittest.TaskFixtures(t) {
		if f.Task == task {
			return f
		}
	}
	t.Fatalf("task_fixtures.json lists no %s fixture", task)
	return lorakittest.TaskFixture{}
}

// checksFor is the parity checks of each golden output, in report order.
var checksFor = map[string][]string{
	OutputLogits:      {"input_ids", "attention_mask", "tokens_used", "logits", "argmax"},
	OutputTokenLogits: {"input_ids", "attention_mask", "tokens_used", "token_logits", "argmax", "entities"},
	OutputEmbeddings:  {"input_ids", "attention_mask", "tokens_used", "embeddings"},
}

func assertParity(t *testing.T, what string, g *Golden, report *ParityReport, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var outputs []string
	for _, c := range report.Checks {
		outputs = append(outputs, c.Output)
	}
	if !report.OK || !slices.Equal(outputs, checksFor[g.Output]) {
		t.Errorf("%s: parity report %+v", what, report)
	}
}

// Every task fixture reproduces its golden file merged, at runtime and as an adapter on its shared base.
func TestTaskFixturesAtGoldenParity(t *testing.T) {
	kinds := map[string]string{TaskTokenClassification: OutputTokenLogits, TaskEmbedding: OutputEmbeddings}
	for _, f := range lorakittest.TaskFixtures(t) {
		dir := lorakittest.FixtureDir(t, f.Name)
		g := loadGolden(t, dir)
		if kinds[f.Task] != g.Output {
			t.Fatalf("%s: task %s has golden output %q", f.Name, f.Task, g.Output)
		}
		for _, merged := range []bool{true, false} {
			m := loadModel(t, dir, merged, Options{})
			info := taskInfo(t, m, "")
			if info.Task != f.Task || info.RuntimeAdapter == merged {
				t.Errorf("%s merged=%v: task info %+v", f.Name, merged, info)
			}
			report, err := g.CheckModel(m)
			assertParity(t, fmt.Sprintf("%s merged=%v", f.Name, merged), g, report, err)
		}
	}
}

func TestTaskFixturesAsAdaptersOnTheirBase(t *testing.T) {
	for _, f := range lorakittest.TaskFixtures(t) {
		b, err := LoadBase(lorakittest.FixtureDir(t, f.Base), Options{})
		if err != nil {
			t.Fatal(err)
		}
		dir := lorakittest.FixtureDir(t, f.Name)
		if err := b.AddAdapter("task", dir); err != nil {
			t.Fatalf("%s on %s: %v", f.Name, f.Base, err)
		}
		g := loadGolden(t, dir)
		report, err := g.CheckAdapter(b, "task")
		assertParity(t, f.Name+" on its base", g, report, err)
		b.Close()
	}
}
