package lorakit

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/lorakit/lorakittest"
)

func TestConcurrentClassifyGivesGoldenResults(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	g := loadGolden(t, dir)
	m := loadModel(t, dir, true, Options{Threads: 1})
	const goroutines, calls = 16, 10
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*calls)
	for w := 0; w < goroutines; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for c := 0; c < calls; c++ {
				row := (w + c) % g.NumTexts
				res, err := m.Classify([]string{g.Texts[row]})
				if err != nil {
					errs <- err
					return
				}
				for j := 0; j < g.NumLabels; j++ {
					if d := float64(res.Logits[j] - g.Logits[row*g.NumLabels+j]); d > g.Tolerance || d < -g.Tolerance {
						errs <- errors.New("a concurrent result differs from golden")
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseWhileOthersClassify(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_lora_a")
	g := loadGolden(t, dir)
	m, err := Load(dir, true, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	var succeeded, closed atomic.Int64
	var wg sync.WaitGroup
	failures := make(chan error, 64)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := m.Classify(g.Texts)
				switch {
				case err == nil:
					succeeded.Add(1)
				case errors.Is(err, ErrClosed):
					closed.Add(1)
					return
				default:
					failures <- err
					return
				}
			}
		}()
	}
	// Close only once calls are demonstrably in flight.
	for deadline := time.Now().Add(10 * time.Second); succeeded.Load() < 8 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	var closers sync.WaitGroup
	for i := 0; i < 3; i++ { // concurrent Close calls race with each other too
		closers.Add(1)
		go func() { defer closers.Done(); m.Close() }()
	}
	closers.Wait()
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Errorf("unexpected error: %v", err)
	}
	if succeeded.Load() < 8 || closed.Load() != 8 {
		t.Errorf("succeeded %d, stopped by ErrClosed %d (want >= 8 and 8)", succeeded.Load(), closed.Load())
	}
	if _, err := m.Classify(g.Texts); !errors.Is(err, ErrClosed) {
		t.Errorf("Classify after Close: %v", err)
	}
	if _, err := m.Tokenize(g.Texts); !errors.Is(err, ErrClosed) {
		t.Errorf("Tokenize after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if m.Name() != "tiny_bert_lora_a" || m.Architecture() != "bert" {
		t.Error("metadata stays readable after Close")
	}
}

func TestAdaptersChangeWhileOthersClassify(t *testing.T) {
	b := loadBase(t)
	loraA, loraB := lorakittest.FixtureDir(t, "tiny_bert_lora_a"), lorakittest.FixtureDir(t, "tiny_bert_lora_b")
	if err := b.AddAdapter("a", loraA); err != nil {
		t.Fatal(err)
	}
	g := loadGolden(t, loraA)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	failures := make(chan error, 16)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := b.ClassifyWith("a", g.Texts[:4])
				if err != nil {
					failures <- err
					return
				}
				info, err := b.TaskInfo("a")
				if err != nil {
					failures <- err
					return
				}
				if res.NumLabels != g.NumLabels || len(info.Labels) != g.NumLabels {
					failures <- errors.New("adapter a returned another head's labels")
					return
				}
			}
		}()
	}
	for i := 0; i < 10; i++ {
		if err := b.AddAdapter("b", loraB); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ClassifyWith("b", g.Texts[:2]); err != nil {
			t.Fatal(err)
		}
		if got := b.Adapters(); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("adapters while b is loaded: %v", got)
		}
		if !b.RemoveAdapter("b") {
			t.Fatal("adapter b vanished")
		}
	}
	close(stop)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
}

func TestDroppedHandlesAreReleasedByTheSafetyNet(t *testing.T) {
	dir := lorakittest.FixtureDir(t, "tiny_bert_full")
	before := safetyNetReleases.Load()
	for i := 0; i < 5; i++ {
		if _, err := Load(dir, true, Options{}); err != nil { // dropped without Close
			t.Fatal(err)
		}
	}
	closed, err := Load(dir, true, Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close() // Close stops the cleanup: once collected it must not be freed a second time
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		runtime.GC()
		if safetyNetReleases.Load()-before >= 5 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	if got := safetyNetReleases.Load() - before; got != 5 {
		t.Errorf("safety net released %d handles, want exactly the 5 dropped ones", got)
	}
}
