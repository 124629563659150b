package main

import (
	"fmt"
	"io"

	"github.com/lorakit/lorakit/go/lorakit"
)

// benchNative times Model.Classify on each case's texts: merged weights, or the adapter on its base with
// --runtime (backend native-go-runtime).
func benchNative(cfg *config, cases []benchCase, stderr io.Writer) ([]row, error) {
	model, err := lorakit.Load(cfg.model, !cfg.runtime, lorakit.Options{Threads: cfg.threads})
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", cfg.model, err)
	}
	defer model.Close()
	backend := "native-go"
	if cfg.runtime {
		backend = "native-go-runtime"
	}
	var rows []row
	for _, c := range cases {
		fmt.Fprintf(stderr, "%s: %s ...\n", backend, c.Name)
		med, n, err := timeCalls(func() error {
			_, err := model.Classify(c.Texts)
			return err
		}, cfg.warmup, cfg.repeats, cfg.budget)
		if err != nil {
			return nil, fmt.Errorf("case %s: %w", c.Name, err)
		}
		fmt.Fprintf(stderr, "%s: %s: median %.2f ms of %d calls\n", backend, c.Name, ms(med), n)
		rows = append(rows, row{Backend: backend, Case: c.Name, Batch: c.Batch, SeqLen: c.SeqLen,
			MedianMS: ms(med), SeqPerS: float64(c.Batch) / med.Seconds()})
	}
	return rows, nil
}
