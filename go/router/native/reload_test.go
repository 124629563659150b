package native_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/native"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// Real models under concurrent requests while generations are swapped: no request fails, and every retired
// generation's bases and models are closed by the last request that used them (race detector + cgocheck2).
func TestReloadUnderLoadWithNativeModels(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA, routertest.LoraB, routertest.Full)
	loader := &recordingLoader{inner: &native.Loader{Options: lorakit.Options{Threads: 1}}}
	srv, err := router.New(router.Config{ModelsRoot: root, Loader: loader})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	const workers, reloads = 4, 5
	body, _ := json.Marshal(map[string]any{"texts": []string{"please close my account", "where is my new card?"},
		"task_type": "all", "options": map[string]any{"return_probabilities": true}})
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ { // bounded; normally ended by stop
				select {
				case <-stop:
					return
				default:
				}
				resp, err := ts.Client().Post(ts.URL+"/api/v1/classify/batch", "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					t.Error(err)
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					t.Errorf("status %d: %s", resp.StatusCode, raw)
					return
				}
				ok.Add(1)
			}
		}()
	}
	for i := 0; i < reloads; i++ {
		if err := srv.Reload(context.Background()); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d ok, %d failed", ok.Load(), failed.Load())
	}
	if g := srv.Generation(); g != reloads+1 {
		t.Fatalf("generation %d", g)
	}
	sets := loader.all()
	for i, set := range sets[:len(sets)-1] {
		waitClosed(t, i+1, set)
	}
	for _, m := range sets[len(sets)-1].Models {
		if _, err := m.Classifier.Classify([]string{"still open"}); err != nil {
			t.Fatalf("current generation: %v", err)
		}
	}
	<-srv.Close()
	waitClosed(t, len(sets), sets[len(sets)-1])
	t.Logf("%d batch requests (3 tasks each) served across %d reloads", ok.Load(), reloads)
}

type recordingLoader struct {
	inner *native.Loader
	mu    sync.Mutex
	sets  []*router.LoadedSet
}

func (r *recordingLoader) Load(ctx context.Context, cat *discovery.Catalog) (*router.LoadedSet, error) {
	set, err := r.inner.Load(ctx, cat)
	if err == nil {
		r.mu.Lock()
		r.sets = append(r.sets, set)
		r.mu.Unlock()
	}
	return set, err
}

func (r *recordingLoader) all() []*router.LoadedSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*router.LoadedSet(nil), r.sets...)
}

// waitClosed waits until every model of a generation answers lorakit.ErrClosed.
func waitClosed(t *testing.T, gen int, set *router.LoadedSet) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, m := range set.Models {
		for {
			_, err := m.Classifier.Classify([]string{"after close"})
			if errors.Is(err, lorakit.ErrClosed) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("generation %d: %s still open (%v)", gen, m.Info.ID, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
