package router

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The vLLM semantic-router classification routes: /api/v1/classify/{intent,pii,security} with its request
// and response shapes. Options the upstream API accepts without acting on them (include_explanation,
// detection_types, sensitivity, return_positions) are accepted and documented as such.

type intentRequest struct {
	Text    string `json:"text"`
	Options struct {
		ReturnProbabilities bool    `json:"return_probabilities"`
		ConfidenceThreshold float64 `json:"confidence_threshold"`
		IncludeExplanation  bool    `json:"include_explanation"`
	} `json:"options"`
}

type intentClassification struct {
	Category         string  `json:"category"`
	Confidence       float32 `json:"confidence"`
	ProcessingTimeMS int64   `json:"processing_time_ms"`
}

type intentResponse struct {
	Classification intentClassification `json:"classification"`
	Probabilities  map[string]float32   `json:"probabilities,omitempty"`
	// RoutingDecision follows semantic-router: high_confidence_specialized at or above the threshold
	// (default 0.7), low_confidence_general below it.
	RoutingDecision string `json:"routing_decision"`
}

type piiRequest struct {
	Text    string `json:"text"`
	Options struct {
		EntityTypes         []string `json:"entity_types"`
		ConfidenceThreshold float64  `json:"confidence_threshold"`
		ReturnPositions     bool     `json:"return_positions"`
		MaskEntities        bool     `json:"mask_entities"`
	} `json:"options"`
}

type piiEntity struct {
	Type          string  `json:"type"`
	Value         string  `json:"value"`
	Confidence    float32 `json:"confidence"`
	StartPosition int     `json:"start_position"` // Unicode code points, end exclusive
	EndPosition   int     `json:"end_position"`
	MaskedValue   string  `json:"masked_value,omitempty"`
}

type piiResponse struct {
	HasPII                 bool        `json:"has_pii"`
	Entities               []piiEntity `json:"entities"`
	MaskedText             string      `json:"masked_text,omitempty"`
	SecurityRecommendation string      `json:"security_recommendation"` // block when PII was found
	ProcessingTimeMS       int64       `json:"processing_time_ms"`
}

type securityRequest struct {
	Text    string `json:"text"`
	Options struct {
		DetectionTypes   []string `json:"detection_types"`
		Sensitivity      string   `json:"sensitivity"`
		IncludeReasoning bool     `json:"include_reasoning"`
	} `json:"options"`
}

type securityResponse struct {
	IsJailbreak      bool     `json:"is_jailbreak"`    // the top label is an unsafe label
	RiskScore        float32  `json:"risk_score"`      // summed probability of the unsafe labels
	DetectionTypes   []string `json:"detection_types"` // the unsafe top label, when unsafe
	Confidence       float32  `json:"confidence"`      // probability of the top label
	Recommendation   string   `json:"recommendation"`  // block or allow
	Reasoning        string   `json:"reasoning,omitempty"`
	PatternsDetected []string `json:"patterns_detected"`
	ProcessingTimeMS int64    `json:"processing_time_ms"`
}

const defaultRoutingThreshold = 0.7

// singleText validates the one text of a semantic-router request.
func (s *Server) singleText(text string) *apiError {
	if text == "" {
		return errorf(http.StatusBadRequest, codeInvalidRequest, "text is required and must not be empty")
	}
	return s.validateTexts("text", []string{text})
}

// decodeSemantic decodes a semantic-router request into req and checks its one text and, when given, its
// confidence threshold; false means the error was written.
func (s *Server) decodeSemantic(w http.ResponseWriter, r *http.Request, req any, text *string, threshold *float64) bool {
	e := decodeJSON(w, r, s.cfg.Limits.MaxBodyBytes, req)
	if e == nil {
		e = s.singleText(*text)
	}
	if e == nil && threshold != nil {
		e = checkThreshold(*threshold)
	}
	if e != nil {
		writeError(w, e)
		return false
	}
	return true
}

func (s *Server) handleIntent(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req intentRequest
	if !s.decodeSemantic(w, r, &req, &req.Text, &req.Options.ConfidenceThreshold) {
		return
	}
	g, m, task := s.compatModel(w, roleIntent, s.cfg.Compat.Intent)
	if g == nil {
		return
	}
	defer g.release()
	out, _, e := s.classifyRaw(r.Context(), m, TaskTiming{Task: task, Model: m.Info.ID, Texts: 1}, []string{req.Text})
	if e != nil {
		writeError(w, e)
		return
	}
	best := argmax(out.Probabilities)
	resp := intentResponse{Classification: intentClassification{Category: out.Labels[best], Confidence: out.Probabilities[best]}}
	threshold := req.Options.ConfidenceThreshold
	if threshold == 0 {
		threshold = defaultRoutingThreshold
	}
	resp.RoutingDecision = "low_confidence_general"
	if float64(out.Probabilities[best]) >= threshold {
		resp.RoutingDecision = "high_confidence_specialized"
	}
	if req.Options.ReturnProbabilities {
		resp.Probabilities = make(map[string]float32, len(out.Labels))
		for j, l := range out.Labels {
			resp.Probabilities[l] = out.Probabilities[j]
		}
	}
	resp.Classification.ProcessingTimeMS = time.Since(start).Milliseconds()
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handlePII(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req piiRequest
	if !s.decodeSemantic(w, r, &req, &req.Text, &req.Options.ConfidenceThreshold) {
		return
	}
	g, m, task := s.compatModel(w, rolePII, s.cfg.Compat.PII)
	if g == nil {
		return
	}
	defer g.release()
	results, _, e := s.run(r.Context(), m, task, []string{req.Text}, Options{})
	if e != nil {
		writeError(w, e)
		return
	}
	kept := filterEntities(results[0].Entities, req.Options.EntityTypes, float32(req.Options.ConfidenceThreshold))
	resp := piiResponse{HasPII: len(kept) > 0, Entities: []piiEntity{}, SecurityRecommendation: "allow"}
	if resp.HasPII {
		resp.SecurityRecommendation = "block"
	}
	for _, ent := range kept {
		pe := piiEntity{Type: ent.Type, Value: ent.Text, Confidence: ent.Score, StartPosition: ent.Start, EndPosition: ent.End}
		if req.Options.MaskEntities {
			pe.MaskedValue = "[" + ent.Type + "]"
		}
		resp.Entities = append(resp.Entities, pe)
	}
	if req.Options.MaskEntities {
		resp.MaskedText = maskSpans(req.Text, kept)
	}
	resp.ProcessingTimeMS = time.Since(start).Milliseconds()
	writeJSON(w, http.StatusOK, resp)
}

// filterEntities keeps the entities of the requested types (case-insensitive; none = all, as does "ALL")
// scoring at least threshold.
func filterEntities(ents []Entity, types []string, threshold float32) []Entity {
	want := map[string]bool{}
	for _, t := range types {
		want[strings.ToUpper(t)] = true
	}
	all := len(want) == 0 || want["ALL"]
	var kept []Entity
	for _, e := range ents {
		if (all || want[strings.ToUpper(e.Type)]) && e.Score >= threshold {
			kept = append(kept, e)
		}
	}
	return kept
}

// maskSpans replaces each entity span (code-point offsets, in order, not overlapping as the decoder
// emits them) with [TYPE]. It masks only the entities kept by the request's filters, which is why the
// core's masking of all entities is not used here.
func maskSpans(text string, ents []Entity) string {
	runes := []rune(text)
	var b strings.Builder
	at := 0
	for _, e := range ents {
		if e.Start < at || e.End > len(runes) {
			continue // never produced by the decoder; skipping keeps the output well-formed
		}
		b.WriteString(string(runes[at:e.Start]))
		fmt.Fprintf(&b, "[%s]", e.Type)
		at = e.End
	}
	b.WriteString(string(runes[at:]))
	return b.String()
}

func (s *Server) handleSecurity(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req securityRequest
	if !s.decodeSemantic(w, r, &req, &req.Text, nil) {
		return
	}
	g, m, task := s.compatModel(w, roleSecurity, s.cfg.Compat.Security)
	if g == nil {
		return
	}
	defer g.release()
	out, _, e := s.classifyRaw(r.Context(), m, TaskTiming{Task: task, Model: m.Info.ID, Texts: 1}, []string{req.Text})
	if e == nil && out.Unsafe == nil {
		e = s.invalidOutput(r.Context(), task, m, "no unsafe verdict for a model with unsafe labels")
	}
	if e != nil {
		writeError(w, e)
		return
	}
	best := argmax(out.Probabilities)
	resp := securityResponse{IsJailbreak: out.Unsafe[0], RiskScore: out.UnsafeScore[0], Confidence: out.Probabilities[best],
		DetectionTypes: []string{}, PatternsDetected: []string{}, Recommendation: "allow"}
	if resp.IsJailbreak {
		resp.DetectionTypes = []string{out.Labels[best]}
		resp.PatternsDetected = []string{out.Labels[best]}
		resp.Recommendation = "block"
	}
	if req.Options.IncludeReasoning {
		resp.Reasoning = fmt.Sprintf("top label %q (probability %.3f); unsafe labels %s sum to %.3f",
			out.Labels[best], out.Probabilities[best], strings.Join(m.Info.Manifest.UnsafeLabels, ", "), out.UnsafeScore[0])
	}
	resp.ProcessingTimeMS = time.Since(start).Milliseconds()
	writeJSON(w, http.StatusOK, resp)
}
