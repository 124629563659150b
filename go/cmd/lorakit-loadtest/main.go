// Command lorakit-loadtest runs lorakit-router as a child process on loopback and drives it for a bounded
// time with a mix of valid and invalid requests over every route, sending SIGHUP reloads in the middle of
// the run. It writes a JSON report (latency percentiles, throughput, RSS over time) and exits 1 when a
// valid request failed or an invalid one got another status than documented.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

type config struct {
	router      string
	models      string
	routerArgs  []string
	duration    time.Duration
	concurrency int
	reloads     int
	out         string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	rep, err := loadTest(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "lorakit-loadtest: %v\n", err)
		return 1
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "lorakit-loadtest: %v\n", err)
		return 1
	}
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, append(data, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "lorakit-loadtest: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%d requests in %.0fs (%.0f/s, %d workers): %d valid (p50 %.2f ms, p99 %.2f ms), %d invalid; "+
		"%d reloads (generation %d); RSS %d -> %d KiB; valid errors %d, invalid with a wrong status %d\n",
		rep.Requests, rep.DurationS, rep.ThroughputRPS, rep.Concurrency, rep.Valid, rep.ValidLatency.P50, rep.ValidLatency.P99,
		rep.Invalid, rep.Reloads, rep.Generation, rep.RSS[0].RSSKiB, rep.RSS[len(rep.RSS)-1].RSSKiB, rep.ValidErrors, rep.WrongStatus)
	if rep.ValidErrors > 0 || rep.WrongStatus > 0 {
		for _, e := range rep.FirstErrors {
			fmt.Fprintln(stderr, "lorakit-loadtest:", e)
		}
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("lorakit-loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{}
	var extra string
	fs.StringVar(&cfg.router, "router", "", "path of the lorakit-router binary (required)")
	fs.StringVar(&cfg.models, "models", "", "models root the router serves (required)")
	fs.StringVar(&extra, "router-args", "", "more router flags, space separated (e.g. \"--predict-model x\")")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Minute, "how long requests are sent")
	fs.IntVar(&cfg.concurrency, "concurrency", 8, "concurrent clients")
	fs.IntVar(&cfg.reloads, "reloads", 10, "SIGHUP reloads, spread over the middle 60% of the run")
	fs.StringVar(&cfg.out, "out", "", "write the JSON report here")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if cfg.router == "" || cfg.models == "" {
		errs = append(errs, errors.New("--router and --models are required"))
	}
	if cfg.duration <= 0 || cfg.concurrency <= 0 || cfg.reloads < 0 {
		errs = append(errs, errors.New("--duration and --concurrency must be positive, --reloads not negative"))
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %v", fs.Args()))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "lorakit-loadtest: %v\n", err)
		return nil, err
	}
	cfg.routerArgs = strings.Fields(extra)
	return cfg, nil
}

// child is the router under test.
type child struct {
	cmd  *exec.Cmd
	url  string
	logs *os.File
}

func startRouter(cfg *config) (*child, error) {
	args := append([]string{"--models", cfg.models, "--addr", "127.0.0.1:0"}, cfg.routerArgs...)
	cmd := exec.Command(cfg.router, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logs, err := os.CreateTemp("", "lorakit-loadtest-router-*.log")
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.router, err)
	}
	addr := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stderr)
		scanner.Buffer(make([]byte, 1<<20), 1<<20)
		for scanner.Scan() {
			var rec struct{ Msg, Addr, Level string }
			json.Unmarshal(scanner.Bytes(), &rec)
			if rec.Msg == "listening" {
				addr <- rec.Addr
			}
			if rec.Msg != "request" || rec.Level != "INFO" { // the access log of every request is noise here
				fmt.Fprintln(logs, scanner.Text())
			}
		}
		close(addr)
	}()
	c := &child{cmd: cmd, logs: logs}
	select {
	case a, ok := <-addr:
		if !ok {
			cmd.Wait()
			return nil, fmt.Errorf("router exited before listening (log: %s)", logs.Name())
		}
		c.url = "http://" + a
	case <-time.After(2 * time.Minute):
		c.stop()
		return nil, fmt.Errorf("router did not start (log: %s)", logs.Name())
	}
	return c, c.waitHealthy()
}

func (c *child) waitHealthy() error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(c.url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("router never became healthy (log: %s)", c.logs.Name())
}

func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	c.logs.Close()
}

func (c *child) models() ([]servedModel, error) {
	resp, err := http.Get(c.url + "/api/v1/models")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct{ Models []servedModel }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("/api/v1/models: %w", err)
	}
	return body.Models, nil
}

func (c *child) generation() int {
	resp, err := http.Get(c.url + "/health")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var h struct{ Generation int }
	json.NewDecoder(resp.Body).Decode(&h)
	return h.Generation
}

func rssKiB(pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kib)
			return kib
		}
	}
	return 0
}

// sendReloads signals the router reloads times, evenly over the middle 60% of d.
func sendReloads(ctx context.Context, c *child, d time.Duration, reloads int, sent *int) {
	if reloads == 0 {
		return
	}
	start := time.Now()
	for i := 0; i < reloads; i++ {
		at := d/5 + time.Duration(float64(d*3/5)*float64(i)/float64(max(reloads-1, 1)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		if c.cmd.Process.Signal(syscall.SIGHUP) == nil {
			*sent++
		}
	}
}
