package keepalivedconf

import (
	"errors"
	"sort"
)

// Options configure Import.
type Options struct {
	ParseOptions
	ConvertOptions
}

// Import reads the keepalived configuration at path (and what it includes) and returns the
// equivalent hacoord.yaml, with every Diagnostic of the three steps sorted by file and line.
func Import(path string, opt Options) ([]byte, []Diagnostic, error) {
	nodes, pd, err := Parse(path, opt.ParseOptions)
	if err != nil {
		return nil, pd, err
	}
	k, id := Interpret(nodes)
	cfg, cd, err := Convert(k, opt.ConvertOptions)
	all := sortDiagnostics(append(append(pd, id...), cd...))
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Pos.File == "" {
			e.Pos.File = path // about the whole file
		}
		return nil, all, err
	}
	out, err := cfg.YAML(path)
	return out, all, err
}

// sortDiagnostics orders diagnostics by file (in the order files first appear) and line, keeping
// the order of those on one line.
func sortDiagnostics(ds []Diagnostic) []Diagnostic {
	rank := map[string]int{}
	for _, d := range ds {
		if _, ok := rank[d.Pos.File]; !ok {
			rank[d.Pos.File] = len(rank)
		}
	}
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i].Pos, ds[j].Pos
		if rank[a.File] != rank[b.File] {
			return rank[a.File] < rank[b.File]
		}
		return a.Line < b.Line
	})
	return ds
}
