package keepalivedconf

import (
	"fmt"
	"strings"
)

// Pos is a line of an input file. File is the path as the user gave it, or, for an included file,
// as the include pattern resolved it (joined to the including file's directory).
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// A Diagnostic is one line-numbered message about the input: "FILE:LINE: keyword: message".
type Diagnostic struct {
	Pos     Pos
	Keyword string // the keyword the message is about; empty for lexical problems
	Msg     string
}

func (d Diagnostic) String() string {
	if d.Pos.File == "" {
		return d.Msg
	}
	if d.Pos.Line == 0 {
		return fmt.Sprintf("%s: %s", d.Pos.File, d.Msg)
	}
	if d.Keyword == "" {
		return fmt.Sprintf("%s: %s", d.Pos, d.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", d.Pos, d.Keyword, d.Msg)
}

// Error is a Diagnostic that stops the import.
type Error struct{ Diagnostic }

func (e *Error) Error() string { return e.Diagnostic.String() }

func errorf(p Pos, keyword, format string, args ...any) *Error {
	return &Error{Diagnostic{Pos: p, Keyword: keyword, Msg: fmt.Sprintf(format, args...)}}
}

// diags collects Diagnostics, dropping exact repeats (a global default that several instances
// inherit is reported once, at its own line).
type diags struct {
	list []Diagnostic
	seen map[Diagnostic]bool
}

func (d *diags) addf(p Pos, keyword, format string, args ...any) {
	x := Diagnostic{Pos: p, Keyword: keyword, Msg: fmt.Sprintf(format, args...)}
	if d.seen == nil {
		d.seen = map[Diagnostic]bool{}
	}
	if d.seen[x] {
		return
	}
	d.seen[x] = true
	d.list = append(d.list, x)
}

// FormatDiagnostics returns one line per Diagnostic.
func FormatDiagnostics(ds []Diagnostic) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}
