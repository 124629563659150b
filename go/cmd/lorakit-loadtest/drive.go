package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// outcome is what the workers collected.
type outcome struct {
	mu          sync.Mutex
	valid       map[string][]time.Duration
	invalid     int
	validErrors int
	wrongStatus int
	firstErrors []string
}

func (o *outcome) fail(wrong bool, msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if wrong {
		o.wrongStatus++
	} else {
		o.validErrors++
	}
	if len(o.firstErrors) < 20 {
		o.firstErrors = append(o.firstErrors, msg)
	}
}

func loadTest(cfg *config) (*Report, error) {
	c, err := startRouter(cfg)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	models, err := c.models()
	if err != nil {
		return nil, err
	}
	mix := buildMix(models, 256)
	pid := c.cmd.Process.Pid
	out := &outcome{valid: map[string][]time.Duration{}}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.concurrency}}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	start := time.Now()
	var rss []Sample
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // one RSS sample a second, and a last one at the end
		defer bg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			rss = append(rss, Sample{Seconds: ms(time.Since(start)) / 1000, RSSKiB: rssKiB(pid), Generation: c.generation()})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	reloads := 0
	bg.Add(1)
	go func() { defer bg.Done(); sendReloads(ctx, c, cfg.duration, cfg.reloads, &reloads) }()

	var workers sync.WaitGroup
	for w := 0; w < cfg.concurrency; w++ {
		workers.Add(1)
		go func(w int) {
			defer workers.Done()
			for i := w; ctx.Err() == nil; i++ {
				p := mix[i%len(mix)]
				took, status, body, err := send(ctx, client, c.url, p)
				if ctx.Err() != nil && err != nil {
					return // the run ended mid-request
				}
				switch {
				case err != nil:
					out.fail(!p.valid(), fmt.Sprintf("%s: %v", p, err))
				case status != p.want:
					out.fail(!p.valid(), fmt.Sprintf("%s: got %d %s", p, status, body))
				case p.valid():
					out.mu.Lock()
					out.valid[p.name] = append(out.valid[p.name], took)
					out.mu.Unlock()
				default:
					out.mu.Lock()
					out.invalid++
					out.mu.Unlock()
				}
			}
		}(w)
	}
	workers.Wait()
	elapsed := time.Since(start)
	bg.Wait()
	rss = append(rss, Sample{Seconds: ms(time.Since(start)) / 1000, RSSKiB: rssKiB(pid), Generation: c.generation()})

	rep := &Report{DurationS: ms(elapsed) / 1000, Concurrency: cfg.concurrency, Invalid: out.invalid,
		ValidErrors: out.validErrors, WrongStatus: out.wrongStatus, ByProbe: map[string]Latency{},
		Reloads: reloads, Generation: c.generation(), RSS: rss, FirstErrors: out.firstErrors,
		RouterLog: c.logs.Name()}
	var all []time.Duration
	for name, d := range out.valid {
		rep.ByProbe[name] = summarise(d)
		all = append(all, d...)
	}
	rep.ValidLatency = summarise(all)
	rep.Valid = len(all) + out.validErrors
	rep.Invalid += out.wrongStatus
	rep.Requests = rep.Valid + rep.Invalid
	rep.ThroughputRPS = float64(rep.Requests) / elapsed.Seconds()
	if rep.Reloads > 0 && rep.Generation < 2 {
		return rep, fmt.Errorf("%d reloads sent but the router is still on generation %d", rep.Reloads, rep.Generation)
	}
	return rep, nil
}

func send(ctx context.Context, client *http.Client, base string, p probe) (time.Duration, int, string, error) {
	req, err := http.NewRequestWithContext(ctx, p.method, base+p.path, strings.NewReader(p.body))
	if err != nil {
		return 0, 0, "", err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return 0, 0, "", err
	}
	if len(body) > 300 {
		body = body[:300]
	}
	return took, resp.StatusCode, string(body), nil
}
