// Command go_consumer is a program of another module that uses github.com/lorakit/lorakit/go: it loads a
// model directory, recomputes its golden vectors and classifies one text. scripts/test_go_consumer.sh builds
// it outside the repository against an installed liblorakit.
//
// Usage: go_consumer MODEL_DIR TEXT
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/go/lorakit"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go_consumer MODEL_DIR TEXT")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "go_consumer:", err)
		os.Exit(1)
	}
}

func run(dir, text string) error {
	model, err := lorakit.Load(dir, true, lorakit.Options{})
	if err != nil {
		return err
	}
	defer model.Close()
	golden, err := lorakit.ReadGolden(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		return err
	}
	report, err := golden.CheckModel(model)
	if err != nil {
		return err
	}
	if !report.OK {
		return fmt.Errorf("golden vectors of %s do not match", dir)
	}
	res, err := model.Classify([]string{text})
	if err != nil {
		return err
	}
	top := res.TopK(0, 1)
	if len(top) != 1 {
		return fmt.Errorf("no label for %q", text)
	}
	fmt.Printf("lorakit %s\n", lorakit.Version())
	fmt.Printf("golden ok: %d checks\n", len(report.Checks))
	fmt.Printf("%s\t%s\t%.4f\n", text, top[0].Label, top[0].Prob)
	return nil
}
