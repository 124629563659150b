package lorakit

import (
	"slices"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

// BenchmarkCGOOverhead compares one Classify of a tiny batch through the Go binding with the same core call
// timed inside Rust (lorakit_model_time_classify), so the difference is what CGO plus the binding add per
// call: text marshalling, the cgo transitions, the result handle and copying it into Go memory.
//
//	cd go && go test -run '^$' -bench CGOOverhead -benchtime 2000x ./lorakit
func BenchmarkCGOOverhead(b *testing.B) {
	m := loadModel(b, lorakittest.FixtureDir(b, "tiny_bert_full"), true, Options{Threads: 1})
	batch := []string{"my card payment was declined", "hello"}

	b.Run("noop-cgo-call", func(b *testing.B) {
		for b.Loop() {
			Version()
		}
	})
	b.Run("classify", func(b *testing.B) {
		if _, err := m.Classify(batch); err != nil { // warm up
			b.Fatal(err)
		}
		// Alternate Go and Rust in small chunks and take the median of the paired per-call difference, so
		// drift and other processes on the machine hit both sides alike.
		const chunk = 20
		var goPerCall, rustPerCall, overhead []float64
		b.ResetTimer()
		for calls := 0; calls < b.N; calls += chunk {
			start := time.Now()
			for i := 0; i < chunk; i++ {
				if _, err := m.Classify(batch); err != nil {
					b.Fatal(err)
				}
			}
			goUs := float64(time.Since(start).Nanoseconds()) / 1e3 / chunk
			ns, err := m.timeClassify(batch, chunk)
			if err != nil {
				b.Fatal(err)
			}
			rustUs := float64(ns) / 1e3 / chunk
			goPerCall, rustPerCall = append(goPerCall, goUs), append(rustPerCall, rustUs)
			overhead = append(overhead, goUs-rustUs)
		}
		b.StopTimer()
		b.ReportMetric(median(goPerCall), "go-µs/call")
		b.ReportMetric(median(rustPerCall), "rust-µs/call")
		b.ReportMetric(median(overhead), "overhead-µs/call")
	})
}

func median(values []float64) float64 {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}
