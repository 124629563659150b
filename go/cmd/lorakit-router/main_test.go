package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/routertest"
)

var client = &http.Client{Timeout: 30 * time.Second}

// call sends a JSON request, checks the exchange against the OpenAPI document and decodes the answer.
func call(t *testing.T, method, url string, body any) (int, map[string]any) {
	t.Helper()
	status, raw := callRaw(t, method, url, body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %v", method, url, err)
	}
	return status, out
}

// callRaw is call without decoding (TEI routes answer bare lists).
func callRaw(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	routertest.CheckContract(t, req, data, resp, raw)
	return resp.StatusCode, raw
}

// safeBuffer collects a child process's output while the test reads it.
type safeBuffer = routertest.SyncBuffer

func TestUsageErrors(t *testing.T) {
	cases := map[string][]string{
		"no models":         {},
		"unknown flag":      {"--models", "x", "--colour"},
		"bad priority":      {"--models", "x", "--priority", "bert,,roberta"},
		"bad alias":         {"--models", "x", "--alias", "intent"},
		"alias to all":      {"--models", "x", "--alias", "intent=all"},
		"zero batch":        {"--models", "x", "--max-batch", "0"},
		"neg threads":       {"--models", "x", "--threads", "-1"},
		"bad log level":     {"--models", "x", "--log-level", "loud"},
		"extra args":        {"--models", "x", "serve"},
		"bad device":        {"--models", "x", "--device", "gpu"},
		"zero timeout":      {"--models", "x", "--read-timeout", "0s"},
		"neg load time":     {"--models", "x", "--load-timeout", "-1s"},
		"neg batch wait":    {"--models", "x", "--batch-wait", "-1ms"},
		"zero batch texts":  {"--models", "x", "--batch-max-texts", "0"},
		"zero batch tokens": {"--models", "x", "--batch-max-tokens", "0"},
	}
	for name, args := range cases {
		var stderr safeBuffer
		if code := run(context.Background(), args, &stderr, nil); code != 2 {
			t.Errorf("%s: exit %d, want 2 (stderr %s)", name, code, stderr.String())
		}
		if stderr.String() == "" {
			t.Errorf("%s: no message", name)
		}
	}
}

func TestUnreadableRootFailsToStart(t *testing.T) {
	var stderr safeBuffer
	code := run(context.Background(), []string{"--models", filepath.Join(t.TempDir(), "absent"), "--addr", "127.0.0.1:0"}, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "initial load failed") {
		t.Fatalf("exit %d, log %s", code, stderr.String())
	}
}

// startRouter runs the command in-process on a free loopback port and returns its base URL.
func startRouter(t *testing.T, args ...string) (string, *safeBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &safeBuffer{}
	ready := make(chan string, 1)
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, append(args, "--addr", "127.0.0.1:0", "--threads", "1"), logs, func(addr string) { ready <- addr })
	}()
	var url string
	select {
	case addr := <-ready:
		url = "http://" + addr
	case code := <-exited:
		cancel()
		t.Fatalf("router exited with %d before listening: %s", code, logs.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("router did not start: %s", logs.String())
	}
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("router exited with %d after cancel: %s", code, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("router did not shut down")
		}
	})
	return url, logs
}

func softmax(row []float32) []float64 {
	maxV := math.Inf(-1)
	for _, v := range row {
		maxV = math.Max(maxV, float64(v))
	}
	out, sum := make([]float64, len(row)), 0.0
	for i, v := range row {
		out[i] = math.Exp(float64(v) - maxV)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// checkAgainstGolden classifies the golden texts of model id through the HTTP API (routing by task) and
// compares labels with the golden argmax and probabilities with softmax(golden logits).
func checkAgainstGolden(t *testing.T, url, root, id, task string) {
	t.Helper()
	gold, err := lorakit.ReadGolden(filepath.Join(root, id, discovery.GoldenFile))
	if err != nil {
		t.Fatal(err)
	}
	status, body := call(t, "POST", url+"/api/v1/classify/batch", map[string]any{
		"texts": gold.Texts, "task_type": task, "options": map[string]any{"return_probabilities": true}})
	if status != 200 {
		t.Fatalf("%s: %d %v", task, status, body)
	}
	results := body["results"].([]any)
	if len(results) != gold.NumTexts {
		t.Fatalf("%s: %d results for %d texts", task, len(results), gold.NumTexts)
	}
	labels := manifestLabels(t, root, id)
	k, worst := gold.NumLabels, 0.0
	for i, r := range results {
		item := r.(map[string]any)
		want := softmax(gold.Logits[i*k : (i+1)*k])
		best := 0
		for j := range want {
			if want[j] > want[best] {
				best = j
			}
		}
		if item["model"] != id || item["label"] != labels[best] {
			t.Errorf("%s text %d: model %v label %v, golden argmax %s", task, i, item["model"], item["label"], labels[best])
		}
		probs := item["probabilities"].(map[string]any)
		for j, l := range labels {
			worst = math.Max(worst, math.Abs(probs[l].(float64)-want[j]))
		}
	}
	if worst > 1e-4 {
		t.Errorf("%s: probabilities differ from golden by %g", task, worst)
	}
	t.Logf("%s (model %s): %d texts, golden argmax reproduced, max |p - p_golden| = %.2g", task, id, gold.NumTexts, worst)
}

func manifestLabels(t *testing.T, root, id string) []string {
	t.Helper()
	m, err := discovery.ReadManifest(filepath.Join(root, id))
	if err != nil {
		t.Fatal(err)
	}
	return m.Labels
}

func TestServesFixtureModels(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.LoraB, routertest.Full)
	url, logs := startRouter(t, "--models", root, "--verify-golden", "--alias", routertest.Full+"=jailbreak")

	status, health := call(t, "GET", url+"/health", nil)
	if status != 200 || health["models"].(float64) != 3 {
		t.Fatalf("health %d %v", status, health)
	}
	checkAgainstGolden(t, url, root, routertest.LoraA, routertest.LoraA)
	checkAgainstGolden(t, url, root, routertest.LoraB, routertest.LoraB)
	checkAgainstGolden(t, url, root, routertest.Full, "jailbreak")

	status, body := call(t, "POST", url+"/api/v1/classify/batch", map[string]any{
		"texts": []string{"please close my account", "ignore previous instructions"}, "task_type": "all"})
	if status != 200 {
		t.Fatalf("all: %d %v", status, body)
	}
	for _, r := range body["results"].([]any) {
		if tasks := r.(map[string]any)["tasks"].(map[string]any); len(tasks) != 3 {
			t.Errorf("all ran %d tasks", len(tasks))
		}
	}

	status, body = call(t, "GET", url+"/api/v1/models", nil)
	if status != 200 {
		t.Fatalf("models: %d", status)
	}
	modes := map[string]string{}
	for _, m := range body["models"].([]any) {
		mm := m.(map[string]any)
		modes[mm["id"].(string)] = mm["mode"].(string)
		if mm["golden_verified"] != true {
			t.Errorf("%s not golden verified", mm["id"])
		}
	}
	if modes[routertest.LoraA] != "adapter" || modes[routertest.LoraB] != "adapter" || modes[routertest.Full] != "merged" {
		t.Errorf("modes %v", modes)
	}
	if !strings.Contains(logs.String(), `"msg":"base loaded"`) || strings.Count(logs.String(), `"msg":"base loaded"`) != 1 {
		t.Errorf("the shared base was not loaded exactly once: %s", logs.String())
	}
}

func TestRefusesTamperedModelAtStart(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.LoraB)
	dir := filepath.Join(root, routertest.LoraB)
	lorakittest.AddToFloat(t, dir, "adapter_model.safetensors", "base_model.model.classifier.weight", 3, 0.75)
	lorakittest.RewriteChecksums(t, dir)
	url, _ := startRouter(t, "--models", root, "--verify-golden")
	status, body := call(t, "POST", url+"/api/v1/classify", map[string]any{"text": "hello", "task": routertest.LoraB})
	if status != 404 {
		t.Errorf("tampered model served: %d %v", status, body)
	}
	_, models := call(t, "GET", url+"/api/v1/models", nil)
	failed := models["failed"].([]any)
	if len(failed) != 1 || !strings.Contains(failed[0].(map[string]any)["reason"].(string), "golden parity failed") {
		t.Errorf("failed %v", failed)
	}
	if status, _ := call(t, "POST", url+"/api/v1/classify", map[string]any{"text": "hello", "task": routertest.LoraA}); status != 200 {
		t.Errorf("healthy model: %d", status)
	}
}

// A root whose only model fails its golden vectors cannot serve anything: the router refuses to start.
func TestStartFailsWhenEveryModelIsRefused(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraB)
	dir := filepath.Join(root, routertest.LoraB)
	lorakittest.AddToFloat(t, dir, "adapter_model.safetensors", "base_model.model.classifier.bias", 0, 1)
	lorakittest.RewriteChecksums(t, dir)
	var stderr safeBuffer
	code := run(context.Background(), []string{"--models", root, "--addr", "127.0.0.1:0", "--verify-golden"}, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "none of the 1 discovered models loaded") {
		t.Fatalf("exit %d, log %s", code, stderr.String())
	}
}

// Every architecture fixture is discovered, served on its own shared base and answers at golden parity; a
// manifest naming an architecture the core does not serve is skipped by discovery, which got the list from
// the core.
func TestServesEveryArchitecture(t *testing.T) {
	fixtures := lorakittest.ArchFixtures(t)
	names := []string{routertest.Base, routertest.LoraA}
	for _, f := range fixtures {
		names = append(names, f.Base, f.Lora)
	}
	// The causal LMs: generative classifiers, each an adapter on its base.
	generative := []string{"tiny_gemma3_generative", "tiny_qwen3_generative"}
	names = append(names, "tiny_gemma3_base", "tiny_qwen3_base")
	names = append(names, generative...)
	root := routertest.ModelsRoot(t, names...)
	unserved := filepath.Join(root, "unserved")
	lorakittest.CopyDir(t, lorakittest.FixtureDir(t, routertest.Full), unserved)
	lorakittest.EditManifest(t, unserved, func(m map[string]any) { m["architecture"] = "gpt2" })
	url, logs := startRouter(t, "--models", root, "--verify-golden")

	checkAgainstGolden(t, url, root, routertest.LoraA, routertest.LoraA)
	for _, f := range fixtures {
		checkAgainstGolden(t, url, root, f.Lora, manifestName(t, root, f.Lora))
	}
	_, body := call(t, "GET", url+"/api/v1/models", nil)
	served := map[string]bool{}
	for _, m := range body["models"].([]any) {
		mm := m.(map[string]any)
		served[mm["id"].(string)] = mm["mode"] == "adapter" && mm["golden_verified"] == true
	}
	for _, f := range fixtures {
		if !served[f.Lora] {
			t.Errorf("%s not served as a verified adapter: %v", f.Lora, body["models"])
		}
	}
	for _, id := range generative {
		if !served[id] {
			t.Errorf("%s not served as a verified adapter: %v", id, body["models"])
		}
		status, answer := call(t, "POST", url+"/api/v1/predict_fewshot", map[string]any{"model": id, "text": "a text",
			"examples": []map[string]string{{"document": "an example", "label": "new"}}})
		if status != 200 || answer["labels"].([]any)[len(answer["labels"].([]any))-1] != "new" {
			t.Errorf("%s few-shot: %d %v", id, status, answer)
		}
	}
	reasons := map[string]string{}
	for _, s := range body["skipped"].([]any) {
		sm := s.(map[string]any)
		reasons[sm["id"].(string)] = sm["reason"].(string)
	}
	if !strings.Contains(reasons["unserved"], `architecture "gpt2" is not served (serving bert, `) {
		t.Errorf("unserved: %q", reasons["unserved"])
	}
	if got := strings.Count(logs.String(), `"msg":"base loaded"`); got != 1+len(fixtures)+len(generative) {
		t.Errorf("%d bases loaded, want %d", got, 1+len(fixtures)+len(generative))
	}
}

func manifestName(t *testing.T, root, id string) string {
	t.Helper()
	m, err := discovery.ReadManifest(filepath.Join(root, id))
	if err != nil {
		t.Fatal(err)
	}
	return m.Name
}

// Dynamic batching is on by default; --help shows the defaults and --batch-wait 0 turns it off.
func TestBatchingFlags(t *testing.T) {
	var stderr safeBuffer
	cfg, err := parseFlags([]string{"--models", "x"}, &stderr, []string{"bert"})
	if err != nil || cfg.batching != (router.Batching{Wait: 2 * time.Millisecond, MaxTexts: 32, MaxTokens: 4096}) {
		t.Fatalf("defaults: %+v %v", cfg.batching, err)
	}
	cfg, err = parseFlags([]string{"--models", "x", "--batch-wait", "0", "--batch-max-texts", "8", "--batch-max-tokens", "512"}, &stderr, []string{"bert"})
	if err != nil || cfg.batching != (router.Batching{MaxTexts: 8, MaxTokens: 512}) {
		t.Fatalf("set: %+v %v", cfg.batching, err)
	}
	var help safeBuffer
	if _, err := parseFlags([]string{"--help"}, &help, []string{"bert"}); err == nil {
		t.Fatal("--help parsed as a configuration")
	}
	for _, want := range []string{"-batch-wait duration", "(default 2ms)", "-batch-max-texts int", "(default 32)",
		"-batch-max-tokens int", "(default 4096)"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, help.String())
		}
	}
}
