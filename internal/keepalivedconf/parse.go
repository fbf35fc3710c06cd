package keepalivedconf

import "strings"

// A Node is one statement: a keyword, its arguments on the same line, and the block that follows
// it if any. In a value block (virtual_ipaddress, unicast_peer, group, ...) each line is a Node too,
// its first word the Keyword: "10.0.0.1/24 dev eth1" is Keyword "10.0.0.1/24", Args [dev eth1].
type Node struct {
	Pos     Pos
	Keyword string
	Args    []string
	// Raw is the statement's text as keepalived hands it to a keyword handler (after comments and
	// substitutions, before splitting into words), for keywords that re-read it with quoting and
	// escapes (scripts).
	Raw string
	// HasBlock is set when a { } block follows, opened on the keyword's line or the next.
	HasBlock bool
	BlockPos Pos // where the block's '{' is
	Block    []*Node
}

// Arg returns argument i, or "".
func (n *Node) Arg(i int) string {
	if i < len(n.Args) {
		return n.Args[i]
	}
	return ""
}

// Words returns the keyword and the arguments.
func (n *Node) Words() []string { return append([]string{n.Keyword}, n.Args...) }

// ParseOptions configure Parse.
type ParseOptions struct {
	// FS is where the file and its includes are read; nil is the operating system's.
	FS FS
	// ConfigID is keepalived's --config-id: lines "@ID ..." are kept when ID matches it, lines
	// "@^ID ..." when it does not. keepalived's default is the host name without its domain.
	ConfigID string
}

// maxDepth bounds block nesting (keepalived's deepest blocks are 4 levels: virtual_server >
// real_server > HTTP_GET > url).
const maxDepth = 64

// Parse reads path and the files it includes into a tree of Nodes. Problems keepalived itself
// would report and then ignore (a stray '}', an include that matches nothing, an unterminated
// quote) are returned as Diagnostics; what stops the parse (an unreadable file, a block never
// closed, an include cycle) is an *Error.
func Parse(path string, opt ParseOptions) ([]*Node, []Diagnostic, error) {
	if opt.FS == nil {
		opt.FS = OSFS{}
	}
	var d diags
	toks, err := lexFile(opt.FS, path, opt.ConfigID, &d)
	if err != nil {
		return nil, d.list, err
	}
	p := &parser{toks: toks, d: &d}
	nodes, err := p.body(0, token{}, "")
	return nodes, d.list, err
}

type parser struct {
	toks []token
	i    int
	d    *diags
}

// body parses statements until the '}' that closes open (depth > 0), the block of keyword owner,
// or the end of input.
func (p *parser) body(depth int, open token, owner string) ([]*Node, error) {
	var nodes []*Node
	var last *Node // the statement a '{' on the next line would open a block for
	for {
		if p.i >= len(p.toks) {
			if depth > 0 {
				return nil, errorf(open.pos, owner, "'{' is never closed (keepalived: missing '}')")
			}
			return nodes, nil
		}
		t := p.toks[p.i]
		switch t.kind {
		case tokEOL:
			p.i++
		case tokClose:
			p.i++
			if depth > 0 {
				return nodes, nil
			}
			p.d.addf(t.pos, "", "stray '}' ignored (keepalived: Extra '}' found)")
			last = nil
		case tokOpen:
			p.i++
			if depth+1 > maxDepth {
				return nil, errorf(t.pos, "", "blocks nested deeper than %d", maxDepth)
			}
			owner := ""
			if last != nil {
				owner = last.Keyword
			}
			block, err := p.body(depth+1, t, owner)
			if err != nil {
				return nil, err
			}
			if last != nil {
				last.HasBlock, last.BlockPos, last.Block = true, t.pos, block
			} else {
				p.d.addf(t.pos, "", "'{' without a keyword before it; the block is ignored (keepalived: Unexpected '{')")
			}
			last = nil
		case tokWord:
			n := p.statement()
			nodes = append(nodes, n)
			last = n
			// A '{' on the same line opens the block at once; one on a later line is handled above.
			if p.i < len(p.toks) && p.toks[p.i].kind == tokClose {
				last = nil
			}
		}
	}
}

// statement reads the words of one statement, up to the end of the line or a brace.
func (p *parser) statement() *Node {
	first := p.toks[p.i]
	n := &Node{Pos: first.pos, Keyword: first.text}
	p.i++
	end := first.end
	for p.i < len(p.toks) && p.toks[p.i].kind == tokWord {
		n.Args = append(n.Args, p.toks[p.i].text)
		end = p.toks[p.i].end
		p.i++
	}
	n.Raw = strings.TrimSpace(first.line[first.start:end])
	return n
}
