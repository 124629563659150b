//go:build linux

package router_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/lorakit/lorakit/go/discovery/discoverytest"
)

// renameat2Numbers is the renameat2 system call per architecture (the syscall package lacks it on amd64).
var renameat2Numbers = map[string]uintptr{"amd64": 316, "386": 353, "arm": 382, "arm64": 276, "riscv64": 276,
	"loong64": 276, "ppc64": 357, "ppc64le": 357, "s390x": 347}

// exchange swaps two directories in one step (renameat2 RENAME_EXCHANGE), as `lorakit retrain` does.
func exchange(t *testing.T, first, second string) {
	t.Helper()
	number, ok := renameat2Numbers[runtime.GOARCH]
	if !ok {
		t.Fatalf("renameat2's system call number for %s is not in renameat2Numbers", runtime.GOARCH)
	}
	from, err := syscall.BytePtrFromString(first)
	if err != nil {
		t.Fatal(err)
	}
	to, err := syscall.BytePtrFromString(second)
	if err != nil {
		t.Fatal(err)
	}
	const atFDCWD, renameExchange = -100, 2
	fd := atFDCWD
	if _, _, errno := syscall.Syscall6(number, uintptr(fd), uintptr(unsafe.Pointer(from)), uintptr(fd),
		uintptr(unsafe.Pointer(to)), renameExchange, 0); errno != 0 {
		t.Fatalf("renameat2(%s, %s, RENAME_EXCHANGE): %v", first, second, errno)
	}
}

// servedModels lists the ids /api/v1/models serves and checks that every entry it skips is skipped as a
// non-model (hidden or temporary), never as a damaged model.
func (h *harness) servedModels() (ids []string, labels map[string][]string) {
	h.t.Helper()
	status, body := h.do("GET", "/api/v1/models", "")
	if status != 200 {
		h.t.Fatalf("/api/v1/models: %d %v", status, body)
	}
	labels = map[string][]string{}
	for _, raw := range body["models"].([]any) {
		m := raw.(map[string]any)
		id := m["id"].(string)
		ids = append(ids, id)
		for _, l := range m["labels"].([]any) {
			labels[id] = append(labels[id], l.(string))
		}
	}
	for _, raw := range body["skipped"].([]any) {
		s := raw.(map[string]any)
		if reason := s["reason"].(string); !strings.Contains(reason, "not a lorakit model directory") {
			h.t.Errorf("skipped %v as %q", s["id"], reason)
		}
	}
	if failed := body["failed"].([]any); len(failed) != 0 {
		h.t.Errorf("failed models: %v", failed)
	}
	slices.Sort(ids)
	return ids, labels
}

// `lorakit retrain` writes the new model beside the served one under a .tmp- name, exchanges the two in one
// rename, then moves the previous model to a hidden .NAME.prev-<ts> backup (--keep-previous) or removes it.
// Polling must reload exactly once, serve the new manifest, and never load the .tmp- or the hidden copy.
func TestPollReloadsOnceForARetrainExchange(t *testing.T) {
	for _, keepPrevious := range []bool{true, false} {
		t.Run(fmt.Sprintf("keep_previous=%v", keepPrevious), func(t *testing.T) {
			loader := &fakeLoader{}
			h := loaded(t, loader)
			want := []string{"intent_bert", "intent_roberta", "jailbreak", "pii"}
			if ids, _ := h.servedModels(); !slices.Equal(ids, want) {
				t.Fatalf("models %v, want %v", ids, want)
			}
			final := filepath.Join(h.root, "jailbreak")
			old := discoverytest.ReadManifest(t, final)
			sha := old["base"].(map[string]any)["weights_sha256"].(string)
			// an older backup from a previous retrain is already there
			discoverytest.WriteModel(t, h.root, ".jailbreak.prev-20260101T000000Z",
				discoverytest.Spec{Name: "jailbreak", Labels: []string{"benign", "jailbreak"}})

			ctx, cancel := context.WithCancel(context.Background())
			polled := make(chan struct{})
			defer func() { cancel(); <-polled }()
			go func() {
				h.srv.Poll(ctx, 5*time.Millisecond)
				close(polled)
			}()

			sibling := filepath.Join(h.root, "jailbreak.tmp-retrain-1a2b3c4d")
			newLabels := []string{"benign", "injection", "jailbreak"}
			discoverytest.WriteModel(t, h.root, filepath.Base(sibling), discoverytest.Spec{Name: "jailbreak",
				Labels: newLabels, Adapter: true, BasePath: "../base", BaseSHA: sha})
			time.Sleep(60 * time.Millisecond) // a dozen ticks
			if g := h.srv.Generation(); g != 1 {
				t.Fatalf("the retrain in progress (and the old backup) triggered a reload: generation %d", g)
			}

			exchange(t, sibling, final)
			waitFor(t, "poll to load the retrained model", func() bool { return h.srv.Generation() == 2 })
			time.Sleep(60 * time.Millisecond) // the previous model sits under the .tmp- name meanwhile
			if keepPrevious {
				if err := os.Rename(sibling, filepath.Join(h.root, ".jailbreak.prev-20260102T030405Z")); err != nil {
					t.Fatal(err)
				}
			} else if err := os.RemoveAll(sibling); err != nil {
				t.Fatal(err)
			}
			time.Sleep(60 * time.Millisecond)

			if g := h.srv.Generation(); g != 2 {
				t.Fatalf("generation %d after one replace, want 2 (exactly one reload)", g)
			}
			if n, _ := h.metrics().value("lorakit_router_reloads_total", map[string]string{"result": "success"}); n != 2 {
				t.Fatalf("%v successful reloads, want 2 (the initial load and the replace)", n)
			}
			ids, labels := h.servedModels()
			if !slices.Equal(ids, want) {
				t.Fatalf("models %v, want %v", ids, want)
			}
			if !slices.Equal(labels["jailbreak"], newLabels) {
				t.Fatalf("jailbreak serves labels %v, want the retrained %v", labels["jailbreak"], newLabels)
			}
			status, body := h.do("POST", "/api/v1/classify", `{"text": "an injection attempt", "task": "jailbreak"}`)
			if status != 200 || body["label"] != "injection" || body["generation"].(float64) != 2 {
				t.Fatalf("retrained model: %d %v", status, body)
			}
			for gen := 0; gen < 2; gen++ {
				for _, m := range loader.generation(gen) {
					if !slices.Contains(want, m.id) {
						t.Errorf("generation %d loaded %s", gen+1, m.id)
					}
				}
			}
			waitFor(t, "the replaced generation to close", func() bool { return allClosed(loader.generation(0)) })
			entries, err := os.ReadDir(h.root)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Errorf("%s left in the models root", e.Name())
				}
			}
		})
	}
}
