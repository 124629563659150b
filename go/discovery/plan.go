package discovery

import (
	"fmt"
	"sort"
	"strings"
)

// BaseGroup is one base model with every adapter that runs on it: the base is loaded once.
type BaseGroup struct {
	WeightsSHA256 string
	// Path is the base directory to load: the first member's (by ID); all members verified the same weights.
	Path   string
	Models []*Model
}

// Plan splits the catalog into base groups (adapter models keyed by base.weights_sha256, so two paths holding
// the same weights share one load) and merged models loaded on their own. Both are in a stable order.
func (c *Catalog) Plan() (groups []BaseGroup, merged []*Model) {
	index := map[string]int{}
	for _, m := range c.Models { // Models is sorted by ID, so the first member names the path
		if m.Mode != ModeAdapter {
			merged = append(merged, m)
			continue
		}
		key := m.BaseKey()
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			groups = append(groups, BaseGroup{WeightsSHA256: key, Path: m.BasePath})
		}
		groups[i].Models = append(groups[i].Models, m)
	}
	return groups, merged
}

// Priority orders architectures best first; architectures it does not list rank after all listed ones.
type Priority []string

// DefaultPriority ranks architectures in the loader's order (the native core's registry), each alias right
// after its model_type.
func DefaultPriority(archs []Architecture) Priority {
	p := Priority{}
	for _, a := range archs {
		p = append(p, a.Names()...)
	}
	return p
}

// ParsePriority reads a comma-separated architecture list such as "bert,roberta,modernbert".
func ParsePriority(s string) (Priority, error) {
	var p Priority
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		arch := strings.TrimSpace(part)
		if !archPattern.MatchString(arch) {
			return nil, fmt.Errorf("priority: %q is not an architecture name", arch)
		}
		if seen[arch] {
			return nil, fmt.Errorf("priority: %q listed twice", arch)
		}
		seen[arch] = true
		p = append(p, arch)
	}
	return p, nil
}

func (p Priority) rank(arch string) int {
	for i, a := range p {
		if a == arch {
			return i
		}
	}
	return len(p)
}

// Better reports whether a should serve a task in preference to b: architecture priority, then manifest
// name, then ID, so the choice never depends on scan order.
func (p Priority) Better(a, b *Model) bool {
	ra, rb := p.rank(a.Manifest.Architecture), p.rank(b.Manifest.Architecture)
	if ra != rb {
		return ra < rb
	}
	if a.Manifest.Name != b.Manifest.Name {
		return a.Manifest.Name < b.Manifest.Name
	}
	return a.ID < b.ID
}

// Assign picks the model that serves each serving task. Callers pass only models that loaded, so a model
// refused at load (e.g. failed parity) hands its task to the next candidate.
func Assign(models []*Model, p Priority) map[string]*Model {
	winners := map[string]*Model{}
	for _, m := range models {
		if cur, ok := winners[m.ServingTask]; !ok || p.Better(m, cur) {
			winners[m.ServingTask] = m
		}
	}
	return winners
}

// SortedTasks returns the task names of an assignment in order.
func SortedTasks(winners map[string]*Model) []string {
	names := make([]string, 0, len(winners))
	for t := range winners {
		names = append(names, t)
	}
	sort.Strings(names)
	return names
}
