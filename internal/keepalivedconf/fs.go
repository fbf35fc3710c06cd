package keepalivedconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// FS is where Parse reads the configuration and its includes.
type FS interface {
	// ReadFile returns a file's content. Like keepalived it refuses directories and executable
	// files (keepalived skips them with "is not a regular non-executable file").
	ReadFile(name string) ([]byte, error)
	// Glob returns the names matching a pattern without braces, sorted (glob(3) semantics).
	Glob(pattern string) ([]string, error)
	// Abs returns a canonical name for cycle detection (absolute, symlinks resolved where possible).
	Abs(name string) string
}

// OSFS is the operating system's file system.
type OSFS struct{}

// ReadFile reads a regular, non-executable file.
func (OSFS) ReadFile(name string) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	switch {
	case st.IsDir():
		return nil, fmt.Errorf("%s is a directory", name)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", name)
	case st.Mode().Perm()&0o111 != 0:
		return nil, fmt.Errorf("%s is executable (keepalived refuses executable configuration files)", name)
	}
	return os.ReadFile(name)
}

// Glob is filepath.Glob.
func (OSFS) Glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }

// Abs returns the absolute, symlink-free name where it can.
func (OSFS) Abs(name string) string {
	if p, err := filepath.EvalSymlinks(name); err == nil {
		name = p
	}
	if p, err := filepath.Abs(name); err == nil {
		return p
	}
	return filepath.Clean(name)
}

// MapFS is an in-memory FS: file name -> content. Names are slash-separated; relative names are
// relative to "/". For tests and fuzzing.
type MapFS map[string]string

func (m MapFS) key(name string) string {
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	return path.Clean(name)
}

// ReadFile returns the content stored under name.
func (m MapFS) ReadFile(name string) ([]byte, error) {
	for k, v := range m {
		if m.key(k) == m.key(name) {
			return []byte(v), nil
		}
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// Glob matches pattern against the stored names with path.Match.
func (m MapFS) Glob(pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	rel := !strings.HasPrefix(pattern, "/")
	var out []string
	for k := range m {
		name := m.key(k)
		if rel {
			name = strings.TrimPrefix(name, "/")
		}
		if ok, _ := path.Match(path.Clean(pattern), name); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Abs returns the cleaned absolute name.
func (m MapFS) Abs(name string) string { return m.key(name) }

// maxBraceExpansions bounds what one include pattern may expand to.
const maxBraceExpansions = 1024

var errTooManyExpansions = errors.New("brace expression expands to too many patterns")

// expandBraces expands csh-style brace expressions ("{a,b}c" -> "ac", "bc"), nested ones too, as
// glob(3) with GLOB_BRACE does. A backslash escapes the next character; a brace with no matching
// close or no comma is literal.
func expandBraces(p string) ([]string, error) {
	open := -1
	depth := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '{':
			if depth == 0 {
				open = i
			}
			depth++
		case '}':
			if depth == 0 {
				continue
			}
			depth--
			if depth > 0 {
				continue
			}
			alts, ok := splitAlternatives(p[open+1 : i])
			if !ok {
				open = -1
				continue // "{x}" without a comma is literal, as in glob(3)
			}
			var out []string
			for _, a := range alts {
				rest, err := expandBraces(p[:open] + a + p[i+1:])
				if err != nil {
					return nil, err
				}
				out = append(out, rest...)
				if len(out) > maxBraceExpansions {
					return nil, errTooManyExpansions
				}
			}
			return out, nil
		}
	}
	return []string{p}, nil
}

// splitAlternatives splits the inside of a brace expression at its top-level commas.
func splitAlternatives(s string) ([]string, bool) {
	var alts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				alts = append(alts, s[start:i])
				start = i + 1
			}
		}
	}
	if alts == nil {
		return nil, false
	}
	return append(alts, s[start:]), true
}
