package main

import (
	"math"
	"sort"
	"time"
)

// Latency summarises a set of request durations in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func summarise(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	sorted := append([]time.Duration(nil), d...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(sorted)))) - 1
		return ms(sorted[max(i, 0)])
	}
	return Latency{Count: len(sorted), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(sorted[len(sorted)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// Sample is the router's memory at one moment of the run.
type Sample struct {
	Seconds    float64 `json:"t_s"`
	RSSKiB     int     `json:"rss_kib"`
	Generation int     `json:"generation"`
}

// Report is the JSON the load test writes.
type Report struct {
	DurationS     float64            `json:"duration_s"`
	Concurrency   int                `json:"concurrency"`
	Requests      int                `json:"requests"`
	Valid         int                `json:"valid_requests"`
	Invalid       int                `json:"invalid_requests"`
	ValidErrors   int                `json:"valid_errors"`
	WrongStatus   int                `json:"invalid_with_wrong_status"`
	ThroughputRPS float64            `json:"throughput_rps"`
	ValidLatency  Latency            `json:"valid_latency"`
	ByProbe       map[string]Latency `json:"valid_latency_by_request"`
	Reloads       int                `json:"reloads_sent"`
	Generation    int                `json:"final_generation"`
	RSS           []Sample           `json:"rss"`
	FirstErrors   []string           `json:"first_errors"`
	RouterLog     string             `json:"router_log"` // the router's log lines, access log left out
}
