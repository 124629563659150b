package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// process is the built lorakit-router running as a child, with its JSON log lines collected.
type process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	addr   chan string
	exited chan error
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func startBinary(t *testing.T, args ...string) *process {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lorakit-router")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := &process{cmd: exec.Command(bin, args...), addr: make(chan string, 1), exited: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			line := scanner.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				p.addr <- rec.Addr
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
		}
	})
	return p
}

// waitHealthy polls /health until it answers 200; every earlier answer must be 503 "loading".
func waitHealthy(t *testing.T, url string, log func() string) (int, map[string]any) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, health := call(t, "GET", url+"/health", nil)
		if status == 200 {
			return status, health
		}
		if status != 503 || health["status"] != "loading" {
			t.Fatalf("health while loading: %d %v", status, health)
		}
		if time.Now().After(deadline) {
			t.Fatalf("never healthy: %s", log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SIGHUP reloads the models root while serving; SIGTERM shuts down cleanly with exit status 0.
func TestSignalsReloadAndShutdown(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA)
	p := startBinary(t, "--models", root, "--addr", "127.0.0.1:0", "--threads", "1")
	var url string
	select {
	case addr := <-p.addr:
		url = "http://" + addr
	case err := <-p.exited:
		t.Fatalf("router exited before listening (%v): %s", err, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("router did not start: %s", p.log())
	}
	// The port is bound before loading: until the first generation is in, /health answers 503 "loading".
	status, health := waitHealthy(t, url, p.log)
	if status != 200 || health["generation"].(float64) != 1 || health["models"].(float64) != 1 {
		t.Fatalf("health %d %v", status, health)
	}

	lorakittest.CopyDir(t, filepath.Join(root, routertest.LoraA), filepath.Join(root, "lora_a_copy"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, health = call(t, "GET", url+"/health", nil)
		if health["generation"].(float64) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload: %v\n%s", health, p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if health["models"].(float64) != 2 {
		t.Errorf("after reload: %v", health)
	}
	status, body := call(t, "POST", url+"/api/v1/classify", map[string]any{"text": "please close my account", "task": "lora_a_copy"})
	if status != 200 || body["model"] != "lora_a_copy" || body["generation"].(float64) != 2 {
		t.Errorf("new model by id: %d %v", status, body)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) || err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after SIGTERM: %s", p.log())
	}
	for _, want := range []string{`"msg":"SIGHUP: reloading models"`, `"msg":"generation closed","generation":1`, `"msg":"stopped","status":0`} {
		if !strings.Contains(p.log(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatal(err)
	}
}
