package router

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// unmatchedRoute is the route label of requests that matched no registered route: raw paths never become
// label values, so a scanner cannot grow the series count.
const unmatchedRoute = "unmatched"

// latencyBuckets (seconds) cover sub-millisecond tiny models up to long batches.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// batchBuckets (texts per core call) are powers of two up to the largest batch limit.
var batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}

// waitBuckets (seconds) resolve the batching wait (milliseconds) and the queueing behind a running call.
var waitBuckets = []float64{0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// metrics is the router's own Prometheus registry (one per Server, so tests and embedders never share
// state). Label values are bounded: route from the registered route table, code from HTTP status codes,
// model and task from the current generation (series of models that left are deleted at the swap).
type metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	inference *prometheus.HistogramVec
	texts     *prometheus.CounterVec
	embedded  *prometheus.CounterVec
	reloads   *prometheus.CounterVec
	inFlight  prometheus.Gauge
	// Dynamic batching (batcher.go).
	queueDepth prometheus.Gauge
	batchSize  *prometheus.HistogramVec
	batchWait  *prometheus.HistogramVec
	models     prometheus.Gauge
	tasks      prometheus.Gauge
	gen        prometheus.Gauge
	lastLoad   prometheus.Gauge
}

func newMetrics() *metrics {
	start := time.Now()
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lorakit_router_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lorakit_router_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		inference: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lorakit_router_inference_duration_seconds", Help: "Measured core inference time of one batch call, by model id.",
			Buckets: latencyBuckets,
		}, []string{"model"}),
		texts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lorakit_router_texts_classified_total", Help: "Texts classified (labels or entities) by serving task.",
		}, []string{"task"}),
		embedded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lorakit_router_texts_embedded_total", Help: "Texts embedded (embed and similarity) by serving task.",
		}, []string{"task"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lorakit_router_reloads_total", Help: "Model generation loads by result (the initial load included).",
		}, []string{"result"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lorakit_router_batch_queue_depth", Help: "Classify requests waiting to join a coalesced core call.",
		}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lorakit_router_batch_size", Help: "Texts per core classify call, by model id.",
			Buckets: batchBuckets,
		}, []string{"model"}),
		batchWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lorakit_router_batch_wait_seconds", Help: "Time a classify request waited in the batch queue before its core call, by model id.",
			Buckets: waitBuckets,
		}, []string{"model"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lorakit_router_in_flight_requests", Help: "Requests being served."}),
		models:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "lorakit_router_models_loaded", Help: "Models in the current generation."}),
		tasks:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "lorakit_router_tasks_served", Help: "Serving tasks in the current generation."}),
		gen:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "lorakit_router_generation", Help: "Sequence number of the current generation."}),
		lastLoad: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lorakit_router_last_successful_load_timestamp_seconds", Help: "Unix time of the last successful load.",
		}),
	}
	uptime := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lorakit_router_uptime_seconds", Help: "Seconds since the router started.",
	}, func() float64 { return time.Since(start).Seconds() })
	for _, result := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(result) // both series exist from the start, so a failure rate needs no absent()
	}
	m.registry.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.requests, m.latency, m.inference, m.texts, m.embedded, m.reloads,
		m.queueDepth, m.batchSize, m.batchWait,
		m.inFlight, m.models, m.tasks, m.gen, m.lastLoad, uptime,
	)
	return m
}

func (m *metrics) observeRequest(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) observeReload(ok bool) {
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.lastLoad.SetToCurrentTime()
}

// observeInference records one core call of model id (an id of the current generation).
func (m *metrics) observeInference(model string, d time.Duration) {
	m.inference.WithLabelValues(model).Observe(d.Seconds())
}

// observeBatch records the texts of one core classify call of model id.
func (m *metrics) observeBatch(model string, texts int) {
	m.batchSize.WithLabelValues(model).Observe(float64(texts))
}

// observeWait records how long one request queued before its coalesced call started.
func (m *metrics) observeWait(model string, d time.Duration) {
	m.batchWait.WithLabelValues(model).Observe(d.Seconds())
}

func (m *metrics) observeTexts(task string, n int) { m.texts.WithLabelValues(task).Add(float64(n)) }

func (m *metrics) observeEmbedded(task string, n int) {
	m.embedded.WithLabelValues(task).Add(float64(n))
}

// setGeneration publishes the new generation and deletes the series of models and tasks it no longer serves.
func (m *metrics) setGeneration(prev, g *generation) {
	m.gen.Set(float64(g.id))
	m.models.Set(float64(len(g.models)))
	m.tasks.Set(float64(len(g.tasks)))
	if prev == nil {
		return
	}
	for id := range prev.byID {
		if _, kept := g.byID[id]; !kept {
			m.inference.DeleteLabelValues(id)
			m.batchSize.DeleteLabelValues(id)
			m.batchWait.DeleteLabelValues(id)
		}
	}
	for task := range prev.byTask {
		if _, kept := g.byTask[task]; !kept {
			m.texts.DeleteLabelValues(task)
			m.embedded.DeleteLabelValues(task)
		}
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
