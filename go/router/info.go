package router

import (
	"net/http"

	"github.com/lorakit/lorakit/go/discovery"
)

type baseInfo struct {
	ID            string `json:"id"`
	Path          string `json:"path,omitempty"` // resolved directory, adapter mode only
	WeightsSHA256 string `json:"weights_sha256"`
}

type modelInfo struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Task         string   `json:"task"`    // serving task this model answers to
	Serving      bool     `json:"serving"` // false when another model wins its task (still addressable by id)
	Kind         string   `json:"kind"`    // manifest task, e.g. sequence_classification
	Architecture string   `json:"architecture"`
	Labels       []string `json:"labels"` // IOB2 tags for token classification, none for embeddings
	UnsafeLabels []string `json:"unsafe_labels,omitempty"`
	// Calibration (sequence classification) is the manifest's temperature and review threshold, when it has one.
	Calibration *discovery.Calibration `json:"calibration,omitempty"`
	Dim         int                    `json:"dim,omitempty"`       // embedding width
	Normalize   *bool                  `json:"normalize,omitempty"` // embeddings are L2-normalised
	MaxSeqLen   int                    `json:"max_seq_len"`
	Mode        string                 `json:"mode"`
	Base        baseInfo               `json:"base"`
	Path        string                 `json:"path"`
	Golden      bool                   `json:"golden_verified"`
	Note        string                 `json:"note,omitempty"`
}

type problem struct {
	ID     string `json:"id"`
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

type modelsResponse struct {
	Generation uint64            `json:"generation"`
	Root       string            `json:"root"`
	Tasks      map[string]string `json:"tasks"` // serving task -> model id
	Models     []modelInfo       `json:"models"`
	Failed     []problem         `json:"failed"`  // discovered but refused at load
	Skipped    []problem         `json:"skipped"` // not valid model directories
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	g := s.acquireOrUnavailable(w)
	if g == nil {
		return
	}
	defer g.release()
	resp := modelsResponse{Generation: g.id, Root: g.catalog.Root, Tasks: map[string]string{},
		Models: []modelInfo{}, Failed: []problem{}, Skipped: []problem{}}
	for task, m := range g.byTask {
		resp.Tasks[task] = m.Info.ID
	}
	for _, m := range g.models {
		man := m.Info.Manifest
		resp.Models = append(resp.Models, modelInfo{
			ID: m.Info.ID, Name: man.Name, Task: m.Info.ServingTask, Serving: g.servingTask(m) != "",
			Kind: man.Task, Architecture: man.Architecture, Labels: nonNil(man.Labels), UnsafeLabels: man.UnsafeLabels,
			Calibration: man.Calibration, Dim: m.Dim, Normalize: man.Normalize, MaxSeqLen: man.MaxSeqLen,
			Mode: string(m.Info.Mode), Path: m.Info.Dir, Golden: m.GoldenVerified, Note: m.Info.Note,
			Base: baseInfo{ID: man.Base.ID, Path: m.Info.BasePath, WeightsSHA256: man.Base.WeightsSHA256},
		})
	}
	for _, f := range g.failed {
		resp.Failed = append(resp.Failed, problem{ID: f.Info.ID, Path: f.Info.Dir, Reason: f.Err.Error()})
	}
	for _, sk := range g.catalog.Skipped {
		resp.Skipped = append(resp.Skipped, problem{ID: sk.ID, Path: sk.Dir, Reason: sk.Err.Error()})
	}
	writeJSON(w, http.StatusOK, resp)
}

func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

type healthResponse struct {
	// Status is "ok", or (503) "loading" before the first generation is in, "no_models" while nothing can be
	// served.
	Status     string   `json:"status"`
	Generation uint64   `json:"generation"`
	Models     int      `json:"models"`
	Tasks      []string `json:"tasks"`
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	// No generation yet means the first load has not landed (the router binds its port before loading).
	resp := healthResponse{Status: "loading", Tasks: []string{}}
	g := s.cur.acquire()
	if g != nil {
		resp.Status = "no_models"
		defer g.release()
		resp.Generation, resp.Models, resp.Tasks = g.id, len(g.models), g.tasks
	}
	status := http.StatusServiceUnavailable
	if resp.Models > 0 {
		resp.Status, status = "ok", http.StatusOK
	}
	writeJSON(w, status, resp)
}
