package router_test

import (
	"bytes"
	"maps"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape is one parsed /metrics answer, by metric family name.
type scrape map[string]*dto.MetricFamily

// metrics scrapes /metrics and parses it with the Prometheus text parser (a malformed exposition fails).
func (h *harness) metrics() scrape {
	h.t.Helper()
	status, raw := h.raw("GET", "/metrics", "")
	if status != 200 {
		h.t.Fatalf("/metrics: %d %s", status, raw)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		h.t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	return families
}

// value returns a counter's or gauge's value, or a histogram's sample count, of the series with exactly
// these labels.
func (s scrape) value(name string, labels map[string]string) (float64, bool) {
	fam, ok := s[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if !maps.Equal(got, labels) && !(len(got) == 0 && len(labels) == 0) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// labelValues lists the values label takes across a family's series.
func (s scrape) labelValues(name, label string) []string {
	var out []string
	for _, m := range s[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && !slices.Contains(out, l.GetValue()) {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}
