package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

func runVerify(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPassesOnEveryFixture(t *testing.T) {
	for _, name := range []string{"tiny_bert_lora_a", "tiny_bert_lora_b", "tiny_bert_full"} {
		code, out, errOut := runVerify(t, lorakittest.FixtureDir(t, name))
		if code != exitPass {
			t.Fatalf("%s: exit %d\n%s%s", name, code, out, errOut)
		}
		if !strings.Contains(out, "PASS") || result(t, out, "merged", "logits") != "ok" {
			t.Errorf("%s: unexpected report:\n%s", name, out)
		}
		if name != "tiny_bert_full" && result(t, out, "runtime", "logits") != "ok" {
			t.Errorf("%s: the adapter directory must also be checked in runtime mode:\n%s", name, out)
		}
	}
}

// Every architecture fixture passes in both modes, and together the fixtures cover every architecture the
// native core serves: the verifier knows no list of its own.
func TestPassesOnEveryArchitecture(t *testing.T) {
	covered := map[string]bool{"bert": true}  // TestPassesOnEveryFixture
	for _, name := range generativeFixtures { // TestPassesOnGenerativeFixtures
		m, err := discovery.ReadManifest(lorakittest.FixtureDir(t, name))
		if err != nil {
			t.Fatal(err)
		}
		covered[m.Architecture] = true
	}
	for _, f := range lorakittest.ArchFixtures(t) {
		dir := lorakittest.FixtureDir(t, f.Lora)
		code, out, errOut := runVerify(t, dir)
		if code != exitPass || result(t, out, "merged", "logits") != "ok" || result(t, out, "runtime", "logits") != "ok" ||
			result(t, out, "runtime", "input_ids") != "ok" {
			t.Errorf("%s: exit %d\n%s%s", f.Name, code, out, errOut)
		}
		m, err := discovery.ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		covered[m.Architecture] = true
	}
	archs, err := lorakit.Architectures()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range archs {
		if !covered[a.ModelType] {
			t.Errorf("the core serves %q but no fixture was verified for it", a.ModelType)
		}
	}
}

// fields returns the columns of the text report's row for mode and output.
func fields(t *testing.T, out, mode, output string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == mode && f[1] == output {
			return f
		}
	}
	t.Fatalf("no %s %s row in:\n%s", mode, output, out)
	return nil
}

// result is the ok/FAIL column of one row.
func result(t *testing.T, out, mode, output string) string { return fields(t, out, mode, output)[2] }

// tamper copies the fixture, adds delta to one weight of file and re-writes the checksums, so only the
// numeric comparison can catch it.
func tamper(t *testing.T, fixture, file, tensor string, delta float32) string {
	dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, fixture))
	lorakittest.AddToFloat(t, dir, file, tensor, 0, delta)
	lorakittest.RewriteChecksums(t, dir)
	return dir
}

func TestFailsOnTamperedMergedWeights(t *testing.T) {
	dir := tamper(t, "tiny_bert_lora_a", "model.safetensors", "classifier.bias", 1e-3)
	code, out, _ := runVerify(t, dir)
	if code != exitMismatch {
		t.Fatalf("exit %d, want %d\n%s", code, exitMismatch, out)
	}
	// Only the merged path reads model.safetensors: its logits fail by the perturbation, runtime still passes.
	merged := fields(t, out, "merged", "logits")
	diff, err := strconv.ParseFloat(merged[3], 64)
	if err != nil || diff < 0.9e-3 || diff > 1.1e-3 || merged[2] != "FAIL" || result(t, out, "runtime", "logits") != "ok" {
		t.Errorf("report does not single out the merged logits:\n%s", out)
	}
	if !strings.Contains(out, "FAIL: 1 of 10 checks failed") {
		t.Errorf("summary:\n%s", out)
	}
}

func TestFailsOnATinyPerturbationAboveTolerance(t *testing.T) {
	// 3e-4 on one bias is above the 1e-4 tolerance but far too small to change any argmax.
	dir := tamper(t, "tiny_bert_full", "model.safetensors", "classifier.bias", 3e-4)
	code, out, _ := runVerify(t, dir, "--json")
	if code != exitMismatch {
		t.Fatalf("exit %d, want %d\n%s", code, exitMismatch, out)
	}
	var report jsonReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if report.OK || report.Skipped["runtime"] != "no adapter_config.json" {
		t.Fatalf("report: %+v", report)
	}
	var logits, argmax *jsonCheck
	for i := range report.Checks {
		switch report.Checks[i].Output {
		case "logits":
			logits = &report.Checks[i]
		case "argmax":
			argmax = &report.Checks[i]
		}
	}
	if logits == nil || logits.OK || float64(logits.MaxAbsDiff) < 2.5e-4 || float64(logits.MaxAbsDiff) > 3.5e-4 {
		t.Errorf("logits check: %+v", logits)
	}
	if logits != nil && logits.Mismatches != report.NumTexts {
		t.Errorf("a bias shift moves column 0 of every row: %d mismatches for %d texts", logits.Mismatches, report.NumTexts)
	}
	if argmax == nil || !argmax.OK {
		t.Errorf("argmax must still agree: %+v", argmax)
	}
}

func TestFailsOnTamperedAdapterInRuntimeMode(t *testing.T) {
	dir := tamper(t, "tiny_bert_lora_b", "adapter_model.safetensors", "base_model.model.classifier.weight", 0.05)
	code, out, _ := runVerify(t, dir)
	if code != exitMismatch || result(t, out, "runtime", "logits") != "FAIL" || result(t, out, "merged", "logits") != "ok" {
		t.Fatalf("exit %d\n%s", code, out)
	}
	// --merged-only does not read the adapter, so the same directory passes.
	if code, out, _ := runVerify(t, "--merged-only", dir); code != exitPass || !strings.Contains(out, "skipped") {
		t.Errorf("--merged-only: exit %d\n%s", code, out)
	}
}

func TestFailsOnTamperedGoldenTokenIDs(t *testing.T) {
	dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, "tiny_bert_full"))
	golden := filepath.Join(dir, "golden.safetensors")
	raw, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	// input_ids[0][1] (the first real token) is rewritten in place; the header is left untouched.
	replaceInt64(t, raw, "input_ids", 1, 999)
	if err := os.WriteFile(golden, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	lorakittest.RewriteChecksums(t, dir)
	code, out, _ := runVerify(t, dir)
	ids := fields(t, out, "merged", "input_ids")
	if code != exitMismatch || ids[2] != "FAIL" || !strings.Contains(out, "row 0 col 1: expected 999") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestChecksumMismatchIsALoadError(t *testing.T) {
	dir := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, "tiny_bert_lora_a"))
	lorakittest.AddToFloat(t, dir, "model.safetensors", "classifier.bias", 0, 1e-3) // checksums left stale
	code, out, errOut := runVerify(t, dir)
	if code != exitError || !strings.Contains(errOut, "format error") || !strings.Contains(errOut, "model.safetensors") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestUsageAndLoadErrors(t *testing.T) {
	if code, _, errOut := runVerify(t); code != exitError || !strings.Contains(errOut, "usage") {
		t.Errorf("no arguments: exit %d, %s", code, errOut)
	}
	if code, _, _ := runVerify(t, "a", "b"); code != exitError {
		t.Errorf("two directories: exit %d", code)
	}
	if code, _, _ := runVerify(t, "--bogus", "x"); code != exitError {
		t.Errorf("unknown flag: exit %d", code)
	}
	if code, _, errOut := runVerify(t, filepath.Join(t.TempDir(), "absent")); code != exitError || !strings.Contains(errOut, "io error") {
		t.Errorf("missing directory: exit %d, %s", code, errOut)
	}
	noGolden := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, "tiny_bert_full"))
	os.Remove(filepath.Join(noGolden, "golden.safetensors"))
	code, out, _ := runVerify(t, noGolden, "--json")
	var report jsonReport
	if code != exitError || json.Unmarshal([]byte(out), &report) != nil || !strings.Contains(report.Error, "golden.safetensors") {
		t.Errorf("missing golden file: exit %d, %s", code, out)
	}
	corrupt := lorakittest.CopyModelDir(t, lorakittest.FixtureDir(t, "tiny_bert_full"))
	if err := os.WriteFile(filepath.Join(corrupt, "golden.safetensors"), []byte("\x10\x00\x00\x00\x00\x00\x00\x00{not json}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runVerify(t, corrupt); code != exitError || !strings.Contains(errOut, "format error") {
		t.Errorf("corrupt golden file: exit %d, %s", code, errOut)
	}
}
