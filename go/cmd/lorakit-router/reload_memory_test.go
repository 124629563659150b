package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// rssEnv names a CSV file the memory test writes its RSS curve to (scripts/reload_rss.py plots it).
const rssEnv = "LORAKIT_RSS_CSV"

// reloadsEnv overrides the number of reloads (50), for longer curves.
const reloadsEnv = "LORAKIT_RSS_RELOADS"

// rssKiB reads the resident set size of process pid from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kib
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// memoryModel is the largest fixture there is: the MiniLM one when it was built, a tiny one otherwise.
func memoryModel(t *testing.T) string {
	if root := os.Getenv(lorakittest.FixturesEnv); root != "" {
		if _, err := os.Stat(filepath.Join(root, "minilm_lora", "lorakit.json")); err == nil {
			return "minilm_lora"
		}
	}
	return routertest.LoraA
}

// 50 SIGHUP reloads, each followed by requests on the new generation, must not grow the router: every
// generation used to start its own compute threads, and glibc kept each one's malloc arena after it exited.
func TestRSSBoundedAcrossReloads(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the router's RSS")
	}
	name := memoryModel(t)
	root := routertest.ModelsRoot(t, name)
	p := startBinary(t, "--models", root, "--addr", "127.0.0.1:0", "--threads", "2")
	var url string
	select {
	case addr := <-p.addr:
		url = "http://" + addr
	case err := <-p.exited:
		t.Fatalf("router exited before listening (%v): %s", err, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("router did not start: %s", p.log())
	}
	waitHealthy(t, url, p.log)
	pid := p.cmd.Process.Pid
	request := map[string]any{"texts": []string{"please close my account", "what is the weather", "hello"}, "task_type": name}

	const reference = 5
	reloads := 50
	if n, err := strconv.Atoi(os.Getenv(reloadsEnv)); err == nil && n > reference+5 {
		reloads = n
	}
	rss := []int{rssKiB(t, pid)}
	for gen := 2; gen <= reloads+1; gen++ {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, health := call(t, "GET", url+"/health", nil)
			if g, _ := health["generation"].(float64); int(g) == gen {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reload %d did not land: %v\n%s", gen-1, health, p.log())
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Sample once the previous generation is gone: while it drains, memory holds both.
		closed := fmt.Sprintf(`"msg":"generation closed","generation":%d`, gen-1)
		for !strings.Contains(p.log(), closed) {
			if time.Now().After(deadline) {
				t.Fatalf("generation %d never closed:\n%s", gen-1, p.log())
			}
			time.Sleep(5 * time.Millisecond)
		}
		for i := 0; i < 3; i++ {
			if status, body := call(t, "POST", url+"/api/v1/classify/batch", request); status != 200 {
				t.Fatalf("reload %d: %d %v", gen-1, status, body)
			}
		}
		rss = append(rss, rssKiB(t, pid))
	}
	if path := os.Getenv(rssEnv); path != "" {
		var csv strings.Builder
		csv.WriteString("reload,rss_kib\n")
		for i, kib := range rss {
			fmt.Fprintf(&csv, "%d,%d\n", i, kib)
		}
		if err := os.WriteFile(path, []byte(csv.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Medians of five samples around reload 5 and of the last five, so one noisy sample decides nothing.
	// The bound is +15 % plus 16 MiB: Go's heap and the allocator settle within ~15 MiB over the first
	// few dozen reloads and then stay flat (250 reloads of the tiny model plateau near 60 MiB), while the
	// defect this guards against kept each generation's freed weights: ~25 MiB more per MiniLM reload.
	early, late := median(rss[reference-2:reference+3]), median(rss[reloads-4:])
	t.Logf("%s: RSS %d KiB at start, %d around reload %d, %d at reloads %d-%d", name, rss[0], early, reference, late, reloads-4, reloads)
	if limit := early*115/100 + 16<<10; late > limit {
		t.Errorf("RSS grew from %d KiB around reload %d to %d KiB at the last reloads (limit +15%% +16 MiB: %d KiB); curve: %v",
			early, reference, late, limit, rss)
	}
}

func median(samples []int) int {
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// The symlink and timeout flags reach discovery.
func TestPathPolicyFlags(t *testing.T) {
	var stderr safeBuffer
	cfg, err := parseFlags([]string{"--models", "x"}, &stderr, []string{"bert"})
	if err != nil || cfg.followSymlinks || cfg.readTimeout != 60*time.Second || cfg.loadTimeout != 10*time.Minute {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"--models", "x", "--follow-symlinks", "--read-timeout", "5s", "--load-timeout", "1m"}, &stderr, []string{"bert"})
	if err != nil || !cfg.followSymlinks || cfg.readTimeout != 5*time.Second || cfg.loadTimeout != time.Minute {
		t.Fatalf("set: %+v %v", cfg, err)
	}
}
