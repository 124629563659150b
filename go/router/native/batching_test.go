package native_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/lorakit"
	"github.com/lorakit/lorakit/go/router"
	"github.com/lorakit/lorakit/go/router/native"
	"github.com/lorakit/lorakit/go/router/routertest"
)

// Concurrent single requests to a real model are coalesced, and each gets the distribution a direct call on
// its text alone gives (padding inside a coalesced call changes nothing beyond float rounding).
func TestBatchedRequestsMatchDirectCalls(t *testing.T) {
	root := routertest.ModelsRoot(t, routertest.Base, routertest.LoraA)
	direct := byID(load(t, root, false))[routertest.LoraA].Classifier
	srv, err := router.New(router.Config{ModelsRoot: root, Loader: &native.Loader{Options: lorakit.Options{Threads: 1}},
		Batching: router.Batching{Wait: 20 * time.Millisecond, MaxTexts: 8, MaxTokens: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer func() {
		ts.Close()
		<-srv.Close()
	}()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprintf("request %d:%s where is my card", i, strings.Repeat(" please", i))
			body, _ := json.Marshal(map[string]any{"text": text, "task": routertest.LoraA,
				"options": map[string]any{"return_probabilities": true}})
			resp, err := ts.Client().Post(ts.URL+"/api/v1/classify", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var got struct {
				Probabilities map[string]float64 `json:"probabilities"`
				TokensUsed    int                `json:"tokens_used"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
				t.Errorf("request %d: %d %v", i, resp.StatusCode, err)
				return
			}
			want, err := direct.Classify([]string{text})
			if err != nil {
				t.Error(err)
				return
			}
			if got.TokensUsed != want.TokensUsed[0] {
				t.Errorf("request %d: %d tokens used, direct %d", i, got.TokensUsed, want.TokensUsed[0])
			}
			for j, label := range want.Labels {
				if d := math.Abs(got.Probabilities[label] - float64(want.Probabilities[j])); d > 1e-5 {
					t.Errorf("request %d, %s: batched %v, direct %v", i, label, got.Probabilities[label], want.Probabilities[j])
				}
			}
		}()
	}
	wg.Wait()
	resp, err := ts.Client().Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var scraped bytes.Buffer
	scraped.ReadFrom(resp.Body)
	var count, sum float64
	for _, line := range strings.Split(scraped.String(), "\n") {
		fmt.Sscanf(line, `lorakit_router_batch_size_count{model="`+routertest.LoraA+`"} %g`, &count)
		fmt.Sscanf(line, `lorakit_router_batch_size_sum{model="`+routertest.LoraA+`"} %g`, &sum)
	}
	if sum != 16 || count == 0 || count >= 16 {
		t.Errorf("%v core calls for %v texts: no coalescing", count, sum)
	}
}
