package router

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/lorakit/lorakit/go/discovery"
)

// CompatModels names (serving task or model id) the model behind each compatibility route. An empty field
// picks the only loaded model that fits the route (compatRoles); with none or several the route answers
// 503 model_unavailable, naming the flag that decides.
type CompatModels struct {
	Intent   string // /api/v1/classify/intent: a sequence classifier
	PII      string // /api/v1/classify/pii: a token classifier
	Security string // /api/v1/classify/security: a sequence classifier with unsafe labels
	Predict  string // TEI /predict: a sequence classifier
	Embed    string // TEI /embed: an embedding model
}

// compatRole is what one compatibility route needs from its model.
type compatRole struct {
	route string
	flag  string // the command-line flag that names the model
	kind  string // manifest task
	// unsafe: "required" (security), "excluded" from the defaults (intent), "" = either.
	unsafe string
	// describes the model for error messages.
	what string
}

var (
	roleIntent = compatRole{"/api/v1/classify/intent", "--intent-model", discovery.TaskSequenceClassification,
		"excluded", "sequence-classification model without unsafe labels"}
	rolePII = compatRole{"/api/v1/classify/pii", "--pii-model", discovery.TaskTokenClassification,
		"", "token-classification model"}
	roleSecurity = compatRole{"/api/v1/classify/security", "--security-model", discovery.TaskSequenceClassification,
		"required", "sequence-classification model with unsafe labels"}
	rolePredict = compatRole{"/predict", "--predict-model", discovery.TaskSequenceClassification,
		"", "sequence-classification model"}
	roleEmbed = compatRole{"/embed", "--embed-model", discovery.TaskEmbedding, "", "embedding model"}
)

func (r compatRole) fits(m *LoadedModel, explicit bool) bool {
	if m.Kind() != r.kind {
		return false
	}
	hasUnsafe := len(m.Info.Manifest.UnsafeLabels) > 0
	switch r.unsafe {
	case "required":
		return hasUnsafe
	case "excluded":
		return explicit || !hasUnsafe // an explicit choice may be any classifier
	}
	return true
}

// resolveCompat finds the model serving a compatibility route in generation g: the configured name, or
// the only serving task that fits. It returns the model and the task name it answers as.
func resolveCompat(g *generation, role compatRole, configured string) (*LoadedModel, string, *apiError) {
	if configured != "" {
		m := g.resolve(configured)
		switch {
		case m == nil:
			return nil, "", errorf(http.StatusNotFound, codeUnknownTask, "%s %s: no task or model named %q is loaded (tasks: %s)",
				role.flag, role.route, configured, strings.Join(g.tasks, ", "))
		case !role.fits(m, true):
			return nil, "", errorf(http.StatusServiceUnavailable, codeModelUnavailable, "%s %s: %q is served by %s, not a %s",
				role.flag, role.route, configured, m.Info.ID, role.what)
		}
		return m, configured, nil
	}
	var fit []string
	for _, task := range g.tasksOf(role.kind) {
		if role.fits(g.byTask[task], false) {
			fit = append(fit, task)
		}
	}
	switch len(fit) {
	case 1:
		return g.byTask[fit[0]], fit[0], nil
	case 0:
		return nil, "", errorf(http.StatusServiceUnavailable, codeModelUnavailable, "%s needs a %s and none is loaded",
			role.route, role.what)
	}
	return nil, "", errorf(http.StatusServiceUnavailable, codeModelUnavailable, "%d models could serve %s (%s): choose one with %s",
		len(fit), role.route, strings.Join(fit, ", "), role.flag)
}

// compatModel acquires the current generation and resolves role in it; on failure it has answered the
// request and returns a nil generation. The caller releases the generation.
func (s *Server) compatModel(w http.ResponseWriter, role compatRole, configured string) (*generation, *LoadedModel, string) {
	g := s.servingOrUnavailable(w)
	if g == nil {
		return nil, nil, ""
	}
	m, task, e := resolveCompat(g, role, configured)
	if e != nil {
		g.release()
		writeError(w, e)
		return nil, nil, ""
	}
	return g, m, task
}

func checkThreshold(t float64) *apiError {
	if !(t >= 0 && t <= 1) { // NaN fails both
		return errorf(http.StatusBadRequest, codeInvalidRequest, "confidence_threshold must be within [0, 1], got %s", fmt.Sprint(t))
	}
	return nil
}
