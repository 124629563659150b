package discovery_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/discovery/discoverytest"
)

func TestPlanGroupsAdaptersByBaseWeights(t *testing.T) {
	root := t.TempDir()
	shaA := discoverytest.WriteBase(t, filepath.Join(root, "base_a"), "weights A")
	// Same weights under a second path: still one base to load.
	discoverytest.WriteBase(t, filepath.Join(root, "base_a_copy"), "weights A")
	shaB := discoverytest.WriteBase(t, filepath.Join(root, "base_b"), "weights B")
	discoverytest.WriteModel(t, root, "intent", discoverytest.Spec{Adapter: true, BasePath: filepath.Join(root, "base_a"), BaseSHA: shaA})
	discoverytest.WriteModel(t, root, "jailbreak", discoverytest.Spec{Adapter: true, BasePath: "../base_a_copy", BaseSHA: shaA})
	discoverytest.WriteModel(t, root, "pii", discoverytest.Spec{Adapter: true, BasePath: "../base_b", BaseSHA: shaB})
	discoverytest.WriteModel(t, root, "full", discoverytest.Spec{})

	cat := scan(t, root, discovery.Options{})
	if len(cat.Models) != 4 {
		t.Fatalf("models %v skipped %v", ids(cat.Models), cat.Skipped)
	}
	groups, merged := cat.Plan()
	if len(merged) != 1 || merged[0].ID != "full" || merged[0].Mode != discovery.ModeMerged {
		t.Errorf("merged %v", ids(merged))
	}
	if len(groups) != 2 {
		t.Fatalf("%d groups, want 2", len(groups))
	}
	if groups[0].WeightsSHA256 != shaA || strings.Join(ids(groups[0].Models), ",") != "intent,jailbreak" {
		t.Errorf("group 0: %s %v", groups[0].WeightsSHA256, ids(groups[0].Models))
	}
	if groups[0].Path != filepath.Join(root, "base_a") {
		t.Errorf("group 0 path %q", groups[0].Path)
	}
	if groups[1].WeightsSHA256 != shaB || strings.Join(ids(groups[1].Models), ",") != "pii" {
		t.Errorf("group 1: %v", ids(groups[1].Models))
	}
	if p := cat.Model("jailbreak").BasePath; p != filepath.Join(root, "base_a_copy") {
		t.Errorf("relative base path resolved to %q", p)
	}
}

func TestScanBaseProblems(t *testing.T) {
	root := t.TempDir()
	discoverytest.WriteBase(t, filepath.Join(root, "base"), "weights")
	wrong := strings.Repeat("0", 64)
	discoverytest.WriteModel(t, root, "wrong_base", discoverytest.Spec{Adapter: true, BasePath: "../base", BaseSHA: wrong})
	discoverytest.WriteModel(t, root, "no_base", discoverytest.Spec{Adapter: true, BasePath: "../absent", BaseSHA: wrong})
	discoverytest.WriteModel(t, root, "fallback", discoverytest.Spec{Adapter: true, BasePath: "../base", BaseSHA: wrong, AlsoMerged: true})
	discoverytest.WriteModel(t, root, "no_base_path", discoverytest.Spec{Adapter: true, BaseSHA: wrong})

	cat := scan(t, root, discovery.Options{})
	if err := skipped(t, cat, "wrong_base"); !errors.Is(err, discovery.ErrBase) {
		t.Errorf("wrong_base: %v", err)
	}
	if err := skipped(t, cat, "no_base"); !errors.Is(err, discovery.ErrBase) {
		t.Errorf("no_base: %v", err)
	}
	if err := skipped(t, cat, "no_base_path"); !errors.Is(err, discovery.ErrManifest) {
		t.Errorf("no_base_path: %v", err)
	}
	m := cat.Model("fallback")
	if m == nil || m.Mode != discovery.ModeMerged || !strings.Contains(m.Note, "merged") || m.BaseKey() != "" {
		t.Fatalf("fallback: %+v", m)
	}
}

func TestAssignUsesArchitecturePriority(t *testing.T) {
	root := t.TempDir()
	discoverytest.WriteModel(t, root, "a_modernbert", discoverytest.Spec{Name: "intent", Architecture: "modernbert"})
	discoverytest.WriteModel(t, root, "b_roberta", discoverytest.Spec{Name: "intent", Architecture: "roberta"})
	discoverytest.WriteModel(t, root, "c_bert", discoverytest.Spec{Name: "intent", Architecture: "bert"})
	discoverytest.WriteModel(t, root, "d_qwen3", discoverytest.Spec{Name: "intent", Architecture: "qwen3"})
	discoverytest.WriteModel(t, root, "z_bert", discoverytest.Spec{Name: "intent", Architecture: "bert"})
	discoverytest.WriteModel(t, root, "pii", discoverytest.Spec{Architecture: "roberta"})
	discoverytest.WriteModel(t, root, "e_xlm", discoverytest.Spec{Name: "intent", Architecture: "xlm-roberta"})
	cat := scan(t, root, discovery.Options{})
	// As the native core lists them; an alias ranks right after its model_type.
	served := []discovery.Architecture{{ModelType: "bert"}, {ModelType: "roberta", Aliases: []string{"xlm-roberta"}},
		{ModelType: "modernbert"}}
	def := discovery.DefaultPriority(served)
	if strings.Join(def, ",") != "bert,roberta,xlm-roberta,modernbert" {
		t.Fatalf("default priority %v", def)
	}

	winners := discovery.Assign(cat.Models, def)
	if got := discovery.SortedTasks(winners); strings.Join(got, ",") != "intent,pii" {
		t.Fatalf("tasks %v", got)
	}
	if winners["intent"].ID != "c_bert" { // bert first; between two berts with one name, the lower ID
		t.Errorf("intent served by %s", winners["intent"].ID)
	}
	custom, err := discovery.ParsePriority("modernbert, roberta")
	if err != nil {
		t.Fatal(err)
	}
	if w := discovery.Assign(cat.Models, custom)["intent"]; w.ID != "a_modernbert" {
		t.Errorf("custom priority chose %s", w.ID)
	}
	// Without the listed architectures the unlisted ones compete by name then ID.
	var rest []*discovery.Model
	for _, m := range cat.Models {
		if m.Manifest.Architecture == "qwen3" || m.Manifest.Architecture == "roberta" {
			rest = append(rest, m)
		}
	}
	if w := discovery.Assign(rest, def)["intent"]; w.ID != "b_roberta" {
		t.Errorf("listed roberta should beat unlisted qwen3, got %s", w.ID)
	}
	var noRoberta []*discovery.Model
	for _, m := range cat.Models {
		if m.Manifest.Architecture != "roberta" && m.Manifest.Architecture != "bert" {
			noRoberta = append(noRoberta, m)
		}
	}
	if w := discovery.Assign(noRoberta, def)["intent"]; w.ID != "e_xlm" {
		t.Errorf("xlm-roberta ranks right after roberta, above modernbert; got %s", w.ID)
	}
	if p := discovery.DefaultPriority(nil); len(p) != 0 {
		t.Errorf("no architectures, no ranking: %v", p)
	}
}

func TestParsePriorityErrors(t *testing.T) {
	for _, s := range []string{"", "bert,,roberta", "bert,bert", "BERT"} {
		if _, err := discovery.ParsePriority(s); err == nil {
			t.Errorf("ParsePriority(%q): no error", s)
		}
	}
}

func TestAliases(t *testing.T) {
	root := t.TempDir()
	discoverytest.WriteModel(t, root, "lora_intent_bert_r8_model", discoverytest.Spec{Name: "intent_v2"})
	discoverytest.WriteModel(t, root, "guard", discoverytest.Spec{Name: "prompt_guard"})
	discoverytest.WriteModel(t, root, "all_in_one", discoverytest.Spec{Name: "all"})
	cat := scan(t, root, discovery.Options{Aliases: map[string]string{
		"intent_v2":  "intent",    // by manifest name
		"guard":      "jailbreak", // by directory ID
		"all_in_one": "everything",
	}})
	got := map[string]string{}
	for _, m := range cat.Models {
		got[m.ID] = m.ServingTask
	}
	want := map[string]string{"lora_intent_bert_r8_model": "intent", "guard": "jailbreak", "all_in_one": "everything"}
	for id, task := range want {
		if got[id] != task {
			t.Errorf("%s serves %q, want %q", id, got[id], task)
		}
	}
}
