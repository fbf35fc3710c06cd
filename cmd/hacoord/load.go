package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hacoord/hacoord/election/health"
)

// settings is the configuration decoded from the file and the flags, before it is mapped and
// validated (plan.go): the daemon's keys and every instance.
type settings struct {
	file       string // the --config path; "" when everything comes from flags
	daemon     daemonKeys
	instances  []instanceSettings
	syncGroups []syncGroupKeys
	given      map[string]bool // flags given on the command line
}

// instanceSettings is one instance's decoded keys and where they came from.
type instanceSettings struct {
	name    string // "" in the single-instance form: the group names it
	backend string // "" for the daemon's
	keys    instanceKeys
	// path is the YAML path of the instance ("" at the top level, "instances[1]" in a list).
	path string
	// listed is true for an element of instances: (then flags cannot set its keys).
	listed bool
}

// load returns the settings of the daemon's command line: the defaults, then the file (if
// configPath is set), then the flags given on fs. Every problem found while decoding is reported
// at once.
func load(fs *pflag.FlagSet, flagged *flagValues, configPath string) (settings, error) {
	s := settings{file: configPath, given: map[string]bool{}}
	fs.Visit(func(f *pflag.Flag) { s.given[f.Name] = true })
	if configPath == "" {
		s.daemon = flagged.daemon
		s.instances = []instanceSettings{{keys: withTrackFlags(flagged.instance, flagged)}}
		return s, resolveSecrets(&s)
	}
	fc := fileConfig{daemonKeys: defaultDaemon(), instanceKeys: defaultInstance()}
	top, err := readFile(configPath, &fc)
	if err != nil {
		return s, configError{err}
	}
	fv := flagValues{daemon: fc.daemonKeys, instance: fc.instanceKeys}
	if err := overlay(fs, &fv); err != nil {
		return s, configError{err}
	}
	s.daemon, s.syncGroups = fv.daemon, fc.SyncGroups
	if len(fc.Instances) == 0 {
		s.instances = []instanceSettings{{keys: withTrackFlags(fv.instance, &fv)}}
		return s, resolveSecrets(&s)
	}
	var errs []error
	for i, n := range instanceNodes(top) {
		e, err := entryFrom(top, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("config %s: instances[%d]: %w", configPath, i, err))
			continue
		}
		s.instances = append(s.instances, instanceSettings{name: e.Name, backend: e.Backend, keys: e.instanceKeys,
			path: fmt.Sprintf("instances[%d]", i), listed: true})
	}
	if len(errs) > 0 {
		return s, configError{errors.Join(errs...)}
	}
	return s, resolveSecrets(&s)
}

// withTrackFlags returns in with --track-script and --track-interface added to its checks.
func withTrackFlags(in instanceKeys, fv *flagValues) instanceKeys {
	in.Health.Scripts = slices.Clone(in.Health.Scripts)
	for i, a := range fv.trackScripts {
		if a = strings.TrimSpace(a); a != "" {
			in.Health.Scripts = append(in.Health.Scripts, health.Script{Name: fmt.Sprintf("script-%d", i+1), Script: a})
		}
	}
	in.Health.References = append(slices.Clone(in.Health.References), fv.trackRefs...)
	in.Health.Interfaces = slices.Clone(in.Health.Interfaces)
	for _, a := range fv.trackIfaces {
		if a = strings.TrimSpace(a); a != "" {
			in.Health.Interfaces = append(in.Health.Interfaces, health.Interface{Name: a})
		}
	}
	return in
}

// givenFlags returns the flags given, sorted.
func (s settings) givenFlags() []string {
	var out []string
	for f := range s.given {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// key names the setting at YAML key (relative to instance in, or daemon-wide when in is nil) as
// the user gave it: the flag, when it came from a flag or there is no file, else the YAML path.
// value, if not empty, is shown with a flag ("--vip 10.0.0.1/24").
func (s settings) key(in *instanceSettings, key, value string) string {
	if f := flagOf(key); f != "" && (in == nil || !in.listed) && (s.file == "" || s.given[f]) {
		if value != "" {
			return "--" + f + " " + value
		}
		return "--" + f
	}
	if in != nil && in.path != "" {
		return in.path + "." + key
	}
	return key
}
