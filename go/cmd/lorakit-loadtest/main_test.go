package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/router/routertest"
)

// A short run over the fixture models (every route, invalid requests, two reloads) reports no errors, and
// a run against a router that answers differently from the documented statuses fails.
func TestShortLoadTest(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // the router's log
	bin := filepath.Join(t.TempDir(), "lorakit-router")
	if out, err := exec.Command("go", "build", "-o", bin, "../lorakit-router").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, "tiny_bert_token_lora", "tiny_bert_embed_lora",
		"tiny_qwen3_base", "tiny_qwen3_generative")
	report := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr strings.Builder
	code := run([]string{"--router", bin, "--models", root, "--duration", "4s", "--concurrency", "4", "--reloads", "2",
		"--router-args", "--threads 1", "--out", report}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.ValidErrors != 0 || rep.WrongStatus != 0 || rep.Valid == 0 || rep.Invalid == 0 {
		t.Errorf("report: %+v", rep)
	}
	if rep.Reloads != 2 || rep.Generation != 3 {
		t.Errorf("reloads %d, final generation %d: want 2 and 3", rep.Reloads, rep.Generation)
	}
	for _, probe := range []string{"embed tiny_bert_embed_lora", "batch all", "classify tiny_bert_token_lora",
		"fewshot tiny_qwen3_generative"} {
		if rep.ByProbe[probe].Count == 0 {
			t.Errorf("no successful %q request: %v", probe, rep.ByProbe)
		}
	}
	if len(rep.RSS) < 3 || rep.RSS[0].RSSKiB == 0 || rep.ValidLatency.P99 < rep.ValidLatency.P50 {
		t.Errorf("rss %v latency %+v", rep.RSS, rep.ValidLatency)
	}
}

// A valid request that is refused counts as an error and fails the run: a --max-batch below the mix's
// 8-text batches makes them 413.
func TestLoadTestFailsOnErrors(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	bin := filepath.Join(t.TempDir(), "lorakit-router")
	if out, err := exec.Command("go", "build", "-o", bin, "../lorakit-router").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA)
	var stdout, stderr strings.Builder
	start := time.Now()
	code := run([]string{"--router", bin, "--models", root, "--duration", "1s", "--reloads", "0",
		"--router-args", "--threads 1 --max-batch 4"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "got 413") {
		t.Errorf("exit %d after %s: %s %s", code, time.Since(start), stdout.String(), stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"--router", "x"}, {"--router", "x", "--models", "y", "--duration", "0s"}} {
		var stdout, stderr strings.Builder
		if code := run(args, &stdout, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}
