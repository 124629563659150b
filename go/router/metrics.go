package router

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the request latency histogram.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []uint64 // per bucket (not cumulative); the last slot is +Inf
	sum    float64
	total  uint64
}

type requestKey struct{ route, code string }

// metrics is the router's Prometheus registry, written by hand in the text exposition format.
// Label values are bounded: routes come from a fixed table, tasks from the loaded models.
type metrics struct {
	mu        sync.Mutex
	requests  map[requestKey]uint64
	latency   map[string]*histogram
	reloads   map[string]uint64 // result -> count
	texts     map[string]uint64 // serving task -> texts classified
	embedded  map[string]uint64 // serving task -> texts embedded
	inFlight  atomic.Int64
	models    atomic.Int64
	tasks     atomic.Int64
	gen       atomic.Uint64
	lastLoad  atomic.Int64 // unix seconds of the last successful load
	startTime time.Time
}

func newMetrics() *metrics {
	return &metrics{
		requests: map[requestKey]uint64{}, latency: map[string]*histogram{},
		reloads: map[string]uint64{}, texts: map[string]uint64{}, embedded: map[string]uint64{},
		startTime: time.Now(),
	}
}

func (m *metrics) observeRequest(route string, code int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[requestKey{route, fmt.Sprint(code)}]++
	h := m.latency[route]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets)+1)}
		m.latency[route] = h
	}
	s := d.Seconds()
	i := sort.SearchFloat64s(latencyBuckets, s) // first bound >= s: "le" semantics
	h.counts[i]++
	h.sum += s
	h.total++
}

func (m *metrics) observeReload(ok bool) {
	result := "failure"
	if ok {
		result = "success"
		m.lastLoad.Store(time.Now().Unix())
	}
	m.mu.Lock()
	m.reloads[result]++
	m.mu.Unlock()
}

func (m *metrics) observeTexts(task string, n int) {
	m.mu.Lock()
	m.texts[task] += uint64(n)
	m.mu.Unlock()
}

func (m *metrics) observeEmbedded(task string, n int) {
	m.mu.Lock()
	m.embedded[task] += uint64(n)
	m.mu.Unlock()
}

func (m *metrics) setGeneration(g *generation) {
	m.gen.Store(g.id)
	m.models.Store(int64(len(g.models)))
	m.tasks.Store(int64(len(g.tasks)))
}

// write renders every metric in the Prometheus text format (version 0.0.4), series in a stable order.
func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &strings.Builder{}
	header := func(name, kind, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	}

	header("lorakit_router_requests_total", "counter", "HTTP requests by route and status code.")
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].route != keys[j].route {
			return keys[i].route < keys[j].route
		}
		return keys[i].code < keys[j].code
	})
	for _, k := range keys {
		fmt.Fprintf(b, "lorakit_router_requests_total{route=\"%s\",code=\"%s\"} %d\n", escapeLabel(k.route), k.code, m.requests[k])
	}

	header("lorakit_router_request_duration_seconds", "histogram", "HTTP request latency by route.")
	for _, route := range sortedKeys(m.latency) {
		h := m.latency[route]
		var cum uint64
		for i, le := range latencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(b, "lorakit_router_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %d\n", escapeLabel(route), le, cum)
		}
		fmt.Fprintf(b, "lorakit_router_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %d\n", escapeLabel(route), h.total)
		fmt.Fprintf(b, "lorakit_router_request_duration_seconds_sum{route=\"%s\"} %g\n", escapeLabel(route), h.sum)
		fmt.Fprintf(b, "lorakit_router_request_duration_seconds_count{route=\"%s\"} %d\n", escapeLabel(route), h.total)
	}

	header("lorakit_router_texts_classified_total", "counter", "Texts classified (labels or entities) by serving task.")
	for _, task := range sortedKeys(m.texts) {
		fmt.Fprintf(b, "lorakit_router_texts_classified_total{task=\"%s\"} %d\n", escapeLabel(task), m.texts[task])
	}
	header("lorakit_router_texts_embedded_total", "counter", "Texts embedded (embed and similarity) by serving task.")
	for _, task := range sortedKeys(m.embedded) {
		fmt.Fprintf(b, "lorakit_router_texts_embedded_total{task=\"%s\"} %d\n", escapeLabel(task), m.embedded[task])
	}

	header("lorakit_router_reloads_total", "counter", "Model generation loads by result (the initial load included).")
	for _, result := range []string{"success", "failure"} {
		fmt.Fprintf(b, "lorakit_router_reloads_total{result=\"%s\"} %d\n", result, m.reloads[result])
	}

	header("lorakit_router_models_loaded", "gauge", "Models in the current generation.")
	fmt.Fprintf(b, "lorakit_router_models_loaded %d\n", m.models.Load())
	header("lorakit_router_tasks_served", "gauge", "Serving tasks in the current generation.")
	fmt.Fprintf(b, "lorakit_router_tasks_served %d\n", m.tasks.Load())
	header("lorakit_router_generation", "gauge", "Sequence number of the current generation.")
	fmt.Fprintf(b, "lorakit_router_generation %d\n", m.gen.Load())
	header("lorakit_router_last_successful_load_timestamp_seconds", "gauge", "Unix time of the last successful load.")
	fmt.Fprintf(b, "lorakit_router_last_successful_load_timestamp_seconds %d\n", m.lastLoad.Load())
	header("lorakit_router_in_flight_requests", "gauge", "Requests being served.")
	fmt.Fprintf(b, "lorakit_router_in_flight_requests %d\n", m.inFlight.Load())
	header("lorakit_router_uptime_seconds", "gauge", "Seconds since the router started.")
	fmt.Fprintf(b, "lorakit_router_uptime_seconds %g\n", time.Since(m.startTime).Seconds())
	io.WriteString(w, b.String())
}

// escapeLabel escapes a label value as the text format requires.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
