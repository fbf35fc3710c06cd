package health

import "go.uber.org/zap"

// NewReloaded is New for a reload: the Monitor that replaces a running one, whose checks start in
// the verdicts now holds (by check name: the Gate's, election.Gate.Verdicts) instead of their usual
// starting state, so that a reload does not move the candidacy before a check has run. A check now
// does not name (one the reload adds) starts passing: it takes the node out after its fall count of
// failed runs, not before its first run. A changed check keeps its name's verdict the same way.
// The caller stops the old Monitor's Run, and closes it, before or after starting this one's.
func NewReloaded(cfg Config, now map[string]bool, log *zap.Logger) (*Monitor, error) {
	start := map[string]bool{}
	for _, s := range cfg.Scripts {
		start[s.Name] = true
	}
	for _, t := range cfg.Interfaces {
		start[InterfaceCheck(t.Name)] = true
	}
	if len(cfg.References) > 0 {
		start[ReferenceCheck] = true
	}
	for name := range start {
		if up, ok := now[name]; ok {
			start[name] = up
		}
	}
	return newMonitor(cfg, log, start)
}
