package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/native"
)

// benchTask is the id (and so a task name) the model is served under.
const benchTask = "bench"

// mergedLoader serves adapter models from their merged weights, as native mode does without --runtime.
type mergedLoader struct{ inner router.Loader }

func (l mergedLoader) Load(ctx context.Context, cat *discovery.Catalog) (*router.LoadedSet, error) {
	c := *cat
	c.Models = make([]*discovery.Model, len(cat.Models))
	for i, m := range cat.Models {
		copied := *m
		if copied.Mode == discovery.ModeAdapter {
			copied.Mode, copied.BasePath = discovery.ModeMerged, ""
		}
		c.Models[i] = &copied
	}
	return l.inner.Load(ctx, &c)
}

// benchRouter serves the model with the router (dynamic batching at its defaults) on a loopback port and
// drives each case with --clients concurrent single-text requests.
func benchRouter(cfg *config, cases []benchCase, stderr io.Writer) ([]row, error) {
	root, err := os.MkdirTemp("", "lorakit-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	dir, err := filepath.Abs(cfg.model)
	if err != nil {
		return nil, err
	}
	if err := os.Symlink(dir, filepath.Join(root, benchTask)); err != nil {
		return nil, err
	}
	archs, err := native.Architectures()
	if err != nil {
		return nil, err
	}
	var loader router.Loader = &native.Loader{Options: lorakit.Options{Threads: cfg.threads}}
	if !cfg.runtime {
		loader = mergedLoader{loader}
	}
	srv, err := router.New(router.Config{ModelsRoot: root, Loader: loader, Batching: router.DefaultBatching(),
		Discovery: discovery.Options{Architectures: archs, ResolveBase: resolveBase, FollowSymlinks: true},
		Logger:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return nil, err
	}
	if err := srv.Reload(context.Background()); err != nil {
		return nil, fmt.Errorf("loading %s: %w", cfg.model, err)
	}
	defer func() { <-srv.Close() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go httpSrv.Serve(ln)
	defer httpSrv.Close()
	d := &driver{base: "http://" + ln.Addr().String(), cfg: cfg, client: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{MaxIdleConns: cfg.clients, MaxIdleConnsPerHost: cfg.clients}}}
	if err := d.checkServed(); err != nil {
		return nil, err
	}
	var rows []row
	for _, c := range cases {
		fmt.Fprintf(stderr, "router: %s, %d clients ...\n", c.Name, cfg.clients)
		r, err := d.drive(c)
		if err != nil {
			return nil, fmt.Errorf("case %s: %w", c.Name, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// resolveBase resolves an adapter's base from the model's real directory: the root holds a symlink to it,
// and a relative base path read from the link's side would be cleaned into the wrong directory.
func resolveBase(dir string) (string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	return lorakit.ResolveBase(real)
}

type driver struct {
	base   string
	cfg    *config
	client *http.Client
}

// drive runs one case: every client sends --warmup requests, then all send for --duration.
func (d *driver) drive(c benchCase) (row, error) {
	bodies := make([][]byte, len(c.Texts))
	for i, t := range c.Texts {
		bodies[i], _ = json.Marshal(map[string]string{"text": t, "task": benchTask})
	}
	if _, err := d.phase(bodies, func(_ int, sent int) bool { return sent < d.cfg.warmup }); err != nil {
		return row{}, fmt.Errorf("warmup: %w", err)
	}
	count0, sum0, err := d.batchStats()
	if err != nil {
		return row{}, err
	}
	start := time.Now()
	deadline := start.Add(d.cfg.duration)
	latencies, err := d.phase(bodies, func(int, int) bool { return time.Now().Before(deadline) })
	elapsed := time.Since(start)
	if err != nil {
		return row{}, err
	}
	count1, sum1, err := d.batchStats()
	if err != nil {
		return row{}, err
	}
	if len(latencies) == 0 {
		return row{}, fmt.Errorf("no request completed in %s", d.cfg.duration)
	}
	slices.Sort(latencies)
	p50, p99 := percentile(latencies, 0.50), percentile(latencies, 0.99)
	mean := 0.0
	if count1 > count0 {
		mean = (sum1 - sum0) / (count1 - count0)
	}
	clients := d.cfg.clients
	return row{Backend: "router", Case: c.Name, Batch: 1, SeqLen: c.SeqLen, Clients: &clients, MedianMS: p50,
		P50MS: &p50, P99MS: &p99, SeqPerS: float64(len(latencies)) / elapsed.Seconds(), MeanBatch: &mean}, nil
}

// phase runs --clients goroutines that send requests while more(client, sent) holds, client i starting at
// text i; it returns every request's latency in milliseconds, or the first failure.
func (d *driver) phase(bodies [][]byte, more func(client, sent int) bool) ([]float64, error) {
	var mu sync.Mutex
	var all []float64
	var firstErr error
	var wg sync.WaitGroup
	for i := range d.cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []float64
			for sent := 0; more(i, sent); sent++ {
				start := time.Now()
				if err := d.send(bodies[(i+sent)%len(bodies)]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, ms(time.Since(start)))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, firstErr
}

// checkServed confirms from /api/v1/models that the model is served, in the mode asked for.
func (d *driver) checkServed() error {
	resp, err := d.client.Get(d.base + "/api/v1/models")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Models []struct {
			ID   string `json:"id"`
			Mode string `json:"mode"`
		} `json:"models"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("reading /api/v1/models: %w", err)
	}
	want := string(discovery.ModeMerged)
	if d.cfg.runtime {
		want = string(discovery.ModeAdapter)
	}
	if len(body.Models) != 1 || body.Models[0].Mode != want {
		return fmt.Errorf("the router serves %+v, want %s in %s mode (see the log above)", body.Models, d.cfg.model, want)
	}
	return nil
}

func (d *driver) send(body []byte) error {
	resp, err := d.client.Post(d.base+"/api/v1/classify", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /api/v1/classify: %d %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	return nil
}

// batchStats reads the batch size histogram from /metrics: core calls and the texts they carried.
func (d *driver) batchStats() (count, sum float64, err error) {
	resp, err := d.client.Get(d.base + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("parsing /metrics: %w", err)
	}
	for _, m := range families["lorakit_router_batch_size"].GetMetric() {
		count += float64(m.GetHistogram().GetSampleCount())
		sum += m.GetHistogram().GetSampleSum()
	}
	return count, sum, nil
}

// percentile of sorted values by nearest rank.
func percentile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
