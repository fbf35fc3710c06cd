package keepalivedconf

import (
	"path/filepath"
	"strings"
)

// The lexer follows keepalived's lib/parser.c (read_line, decomment, alloc_strvec):
//
//   - A file is read line by line. '!' and '#' start a comment anywhere outside double quotes;
//     "\#" and "\!" are a literal '#' and '!'.
//   - "@ID text" keeps text only when ID is the configuration id, "@^ID text" only when it is not
//     (keepalived -i, --config-id).
//   - "$NAME=value" defines a parameter; "$NAME" and "${NAME}" are replaced in later lines.
//   - "include PATTERN" (and includer, includem, includew, includeb, includea) splices in the files
//     PATTERN matches: glob(3) with csh brace expressions, relative to the including file's
//     directory, in sorted order. An include cycle is an error.
//   - A line is split into words at white space. A double-quoted string is one word without its
//     quotes (no escapes at this level: scripts are re-read from the raw text, see splitScript).
//     '{' and '}' outside quotes are words of their own and end the statement before them.

// tokKind is the kind of a token.
type tokKind int

const (
	tokWord  tokKind = iota
	tokOpen          // {
	tokClose         // }
	tokEOL           // end of a line
)

type token struct {
	kind   tokKind
	text   string // the word, without quotes
	quoted bool
	pos    Pos
	line   string // the logical line the token is on, for Node.Raw
	start  int    // byte offsets of the token in line
	end    int
}

// maxIncludeDepth bounds include nesting (keepalived has no limit; a cycle is caught before it).
const maxIncludeDepth = 64

type srcFile struct {
	name  string // as shown in positions
	abs   string // canonical, for cycle detection
	lines []string
	next  int
	// siblings are the files the same include matched after this one, read when it ends; inc is
	// that include's position, for their errors.
	siblings []string
	inc      Pos
	incKW    string
}

type lexer struct {
	fs       FS
	configID string
	d        *diags
	stack    []*srcFile
	defs     map[string]string
	toks     []token
}

// lexFile returns the tokens of path and everything it includes.
func lexFile(fsys FS, path string, configID string, d *diags) ([]token, error) {
	b, err := fsys.ReadFile(path)
	if err != nil {
		return nil, &Error{Diagnostic{Pos: Pos{File: path}, Msg: err.Error()}}
	}
	lx := &lexer{fs: fsys, configID: configID, d: d, defs: map[string]string{}}
	lx.stack = []*srcFile{newSrcFile(path, fsys.Abs(path), b)}
	for len(lx.stack) > 0 {
		f := lx.stack[len(lx.stack)-1]
		if f.next >= len(f.lines) {
			lx.stack = lx.stack[:len(lx.stack)-1]
			if err := lx.open(f.siblings, f.inc, f.incKW); err != nil {
				return nil, err
			}
			continue
		}
		raw := f.lines[f.next]
		f.next++
		pos := Pos{File: f.name, Line: f.next}
		if err := lx.line(raw, pos); err != nil {
			return nil, err
		}
	}
	return lx.toks, nil
}

func newSrcFile(name, abs string, content []byte) *srcFile {
	s := strings.ReplaceAll(string(content), "\r\n", "\n")
	return &srcFile{name: name, abs: abs, lines: strings.Split(s, "\n")}
}

// line handles one physical line.
func (lx *lexer) line(raw string, pos Pos) error {
	s := lx.decomment(strings.TrimRight(raw, "\r"), pos)
	if s == "" {
		return nil
	}
	if s[0] == '@' {
		var ok bool
		if s, ok = lx.conditional(s); !ok {
			return nil
		}
	}
	if s[0] == '$' {
		if name, value, ok := definition(s); ok {
			if strings.HasSuffix(value, "\\") {
				return errorf(pos, "$"+name, "multi-line parameter definitions are not supported; write the value on one line")
			}
			lx.defs[name] = value
			return nil
		}
	}
	if strings.HasPrefix(s, "~SEQ") || strings.HasPrefix(s, "~LST") {
		lx.d.addf(pos, s[:4], "dropped: sequence and list blocks are not supported; expand them by hand")
		return nil
	}
	if strings.Contains(s, "$") {
		if r, changed := lx.substitute(s, pos); changed {
			if s = lx.decomment(r, pos); s == "" {
				return nil
			}
		}
	}
	if kw, pattern, ok := includeLine(s); ok {
		return lx.include(kw, pattern, pos)
	}
	lx.tokenize(s, pos)
	return nil
}

// decomment removes leading white space, the comment and trailing white space, as keepalived's
// decomment(): '!' or '#' outside double quotes starts a comment; "\#" and "\!" outside quotes
// are the characters themselves.
func (lx *lexer) decomment(s string, pos Pos) string {
	s = strings.TrimLeft(s, " \t")
	var b strings.Builder
	quote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quote = !quote
		case c == '\\' && i+1 < len(s):
			if !quote && (s[i+1] == '#' || s[i+1] == '!') {
				i++
				c = s[i]
			} else {
				b.WriteByte(c)
				i++
				c = s[i]
			}
		case !quote && (c == '!' || c == '#'):
			return strings.TrimRight(b.String(), " \t")
		}
		b.WriteByte(c)
	}
	if quote {
		lx.d.addf(pos, "", "unterminated quote (keepalived: Unterminated quote); the string runs to the end of the line")
	}
	return strings.TrimRight(b.String(), " \t")
}

// conditional applies "@ID" / "@^ID": it returns the rest of the line and whether it is kept.
func (lx *lexer) conditional(s string) (string, bool) {
	rev := strings.HasPrefix(s, "@^")
	id := s[1:]
	if rev {
		id = s[2:]
	}
	i := strings.IndexAny(id, " \t")
	if i < 0 {
		return "", false
	}
	rest := strings.TrimLeft(id[i:], " \t")
	match := lx.configID != "" && id[:i] == lx.configID
	if match == rev || rest == "" {
		return "", false
	}
	return rest, true
}

// definition parses "$NAME=value" as keepalived's check_definition does.
func definition(s string) (name, value string, ok bool) {
	if len(s) < 3 || !(isAlpha(s[1]) || s[1] == '_') {
		return "", "", false
	}
	i := 2
	for i < len(s) && s[i] != '=' {
		if !isAlnum(s[i]) && s[i] != '_' {
			return "", "", false
		}
		i++
	}
	if i >= len(s) {
		return "", "", false
	}
	return s[1:i], strings.TrimRight(strings.TrimLeft(s[i+1:], " \t"), " \t"), true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isAlpha(c) || c >= '0' && c <= '9' }

// substitute replaces $NAME and ${NAME} by their definitions; undefined names stay as they are.
// ${_PWD} is the directory of the file being read, as in keepalived.
func (lx *lexer) substitute(s string, pos Pos) (string, bool) {
	var b strings.Builder
	changed := false
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		j, braced := i+1, false
		if s[j] == '{' {
			braced = true
			j++
		}
		k := j
		for k < len(s) && (isAlnum(s[k]) || s[k] == '_') {
			k++
		}
		name := s[j:k]
		if braced && (k >= len(s) || s[k] != '}') {
			name = ""
		}
		value, ok := lx.defs[name]
		if name == "_PWD" && !ok {
			value, ok = filepath.Dir(pos.File), true
		}
		if name == "" || !ok {
			b.WriteByte(s[i])
			continue
		}
		b.WriteString(value)
		changed = true
		i = k - 1
		if braced {
			i = k
		}
	}
	return b.String(), changed
}

// includeLine recognises "include PATTERN" and its variants (keepalived's is_include).
func includeLine(s string) (keyword, pattern string, ok bool) {
	if !strings.HasPrefix(s, "include") || len(s) < 8 {
		return "", "", false
	}
	n := 7
	if s[7] != ' ' && s[7] != '\t' {
		if !strings.ContainsRune("rmwba", rune(s[7])) || len(s) < 9 || (s[8] != ' ' && s[8] != '\t') {
			return "", "", false
		}
		n = 8
	}
	return s[:n], strings.TrimSpace(s[n:]), true
}

// include splices in the files pattern matches.
func (lx *lexer) include(keyword, pattern string, pos Pos) error {
	pattern = strings.Trim(pattern, "\"")
	if pattern == "" {
		lx.d.addf(pos, keyword, "no file name given; ignored")
		return nil
	}
	cur := lx.stack[len(lx.stack)-1]
	pats, err := expandBraces(pattern)
	if err != nil {
		return errorf(pos, keyword, "%s: %v", pattern, err)
	}
	var files []string
	for _, p := range pats {
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(cur.name), p)
		}
		m, err := lx.fs.Glob(p)
		if err != nil {
			lx.d.addf(pos, keyword, "%s: %v; ignored", pattern, err)
			continue
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		lx.d.addf(pos, keyword, "no file matches %q (keepalived: No config files matched); nothing included", pattern)
		return nil
	}
	return lx.open(files, pos, keyword)
}

// open pushes the first readable of files, with the rest as its siblings; the include stack is
// the chain of files being read, each including the next, so a file on it is a cycle.
func (lx *lexer) open(files []string, pos Pos, keyword string) error {
	for i, name := range files {
		abs := lx.fs.Abs(name)
		for _, f := range lx.stack {
			if f.abs == abs {
				chain := make([]string, 0, len(lx.stack)+1)
				for _, g := range lx.stack {
					chain = append(chain, g.name)
				}
				return errorf(pos, keyword, "include cycle: %s -> %s", strings.Join(chain, " -> "), name)
			}
		}
		if len(lx.stack) >= maxIncludeDepth {
			return errorf(pos, keyword, "includes nested deeper than %d", maxIncludeDepth)
		}
		b, err := lx.fs.ReadFile(name)
		if err != nil {
			lx.d.addf(pos, keyword, "%v; skipped", err)
			continue
		}
		f := newSrcFile(name, abs, b)
		f.siblings, f.inc, f.incKW = files[i+1:], pos, keyword
		lx.stack = append(lx.stack, f)
		return nil
	}
	return nil
}

// tokenize splits a logical line into tokens (keepalived's read_line brace split + alloc_strvec).
func (lx *lexer) tokenize(s string, pos Pos) {
	add := func(k tokKind, text string, quoted bool, start, end int) {
		lx.toks = append(lx.toks, token{kind: k, text: text, quoted: quoted, pos: pos, line: s, start: start, end: end})
	}
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '{':
			add(tokOpen, "{", false, i, i+1)
			i++
		case c == '}':
			add(tokClose, "}", false, i, i+1)
			i++
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				// decomment has already reported the unterminated quote.
				add(tokWord, s[i+1:], true, i, len(s))
				i = len(s)
				continue
			}
			add(tokWord, s[i+1:i+1+j], true, i, i+2+j)
			i += j + 2
		default:
			j := i
			for j < len(s) && !isSpace(s[j]) && s[j] != '"' && s[j] != '{' && s[j] != '}' {
				j++
			}
			add(tokWord, s[i:j], false, i, j)
			i = j
		}
	}
	add(tokEOL, "", false, len(s), len(s))
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r' || c == '\n'
}
