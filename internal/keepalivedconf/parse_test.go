package keepalivedconf

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// dump renders nodes one per line as "LINE keyword [args] {" ... "}", for compact expectations.
func dump(nodes []*Node) string {
	var b strings.Builder
	var walk func([]*Node, string)
	walk = func(ns []*Node, indent string) {
		for _, n := range ns {
			fmt.Fprintf(&b, "%s%d %s", indent, n.Pos.Line, n.Keyword)
			for _, a := range n.Args {
				fmt.Fprintf(&b, " [%s]", a)
			}
			if n.HasBlock {
				fmt.Fprintf(&b, " {%d\n", n.BlockPos.Line)
				walk(n.Block, indent+"  ")
				fmt.Fprintf(&b, "%s}\n", indent)
			} else {
				b.WriteString("\n")
			}
		}
	}
	walk(nodes, "")
	return b.String()
}

func parseString(t *testing.T, conf string, files MapFS) ([]*Node, []Diagnostic, error) {
	t.Helper()
	fs := MapFS{"/etc/keepalived/keepalived.conf": conf}
	for k, v := range files {
		fs[k] = v
	}
	return Parse("/etc/keepalived/keepalived.conf", ParseOptions{FS: fs, ConfigID: "lb1"})
}

func diagLines(ds []Diagnostic) string {
	var out []string
	for _, d := range ds {
		out = append(out, strings.TrimPrefix(d.String(), "/etc/keepalived/"))
	}
	return strings.Join(out, "\n")
}

// TestParse covers the lexical rules of keepalived.conf(5) ("Comments start with '#' or '!' to
// the end of the line and can start anywhere in a line", quoted strings, blocks) and what
// keepalived's parser.c does with the rest.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       string // dump of the tree
		diags      []string
	}{
		{
			name: "comments with ! and #, also at the end of a line",
			conf: "! header\n# another\nglobal_defs { # opens\n  router_id lb1 ! the name\n}\n",
			want: "3 global_defs {3\n  4 router_id [lb1]\n}\n",
		},
		{
			name: "comment characters inside double quotes are text; \\# and \\! escape them",
			conf: "vrrp_script s {\n script \"/bin/check #1 !x\" # real comment\n}\nx a\\#b\\!c\n",
			want: "1 vrrp_script [s] {1\n  2 script [/bin/check #1 !x]\n}\n4 x [a#b!c]\n",
		},
		{
			name: "block opened on the next line, and after blank and comment lines",
			conf: "vrrp_instance VI_1\n{\n  virtual_ipaddress\n\n  ! the VIPs\n  {\n    10.0.0.1/24\n  }\n}\n",
			want: "1 vrrp_instance [VI_1] {2\n  3 virtual_ipaddress {6\n    7 10.0.0.1/24\n  }\n}\n",
		},
		{
			name: "a whole block on one line; braces glued to words",
			conf: "vrrp_sync_group G{group{VI_1 VI_2}}\n",
			want: "1 vrrp_sync_group [G] {1\n  1 group {1\n    1 VI_1 [VI_2]\n  }\n}\n",
		},
		{
			name: "text after a closing brace is the next statement",
			conf: "a { b } c 1\n",
			want: "1 a {1\n  1 b\n}\n1 c [1]\n",
		},
		{
			name: "a quote starts a new word; quoted braces are text",
			conf: "notify abc\"d e\"f \"{x}\"\n",
			want: "1 notify [abc] [d e] [f] [{x}]\n",
		},
		{
			name:  "stray closing brace at the top level is reported and ignored",
			conf:  "global_defs {\n}\n}\nrouter_id x\n",
			want:  "1 global_defs {1\n}\n4 router_id [x]\n",
			diags: []string{"keepalived.conf:3: stray '}' ignored (keepalived: Extra '}' found)"},
		},
		{
			name:  "a brace with no keyword before it",
			conf:  "{\n a 1\n}\nb\n",
			want:  "4 b\n",
			diags: []string{"keepalived.conf:1: '{' without a keyword before it; the block is ignored (keepalived: Unexpected '{')"},
		},
		{
			name:  "unterminated quote runs to the end of the line",
			conf:  "script \"/bin/x -y\n",
			want:  "1 script [/bin/x -y]\n",
			diags: []string{"keepalived.conf:1: unterminated quote (keepalived: Unterminated quote); the string runs to the end of the line"},
		},
		{
			name: "conditional lines: @ID kept for the config id, @^ID for the others",
			conf: "@lb1 a 1\n@lb2 b 2\n@^lb1 c 3\n@^lb2 d 4\n@lb1\n",
			want: "1 a [1]\n4 d [4]\n",
		},
		{
			name: "parameter definitions and substitution ($NAME, ${NAME}, undefined left alone)",
			conf: "$VIP=10.0.0.100\n$IF=eth0\nvirtual_ipaddress {\n ${VIP}/24 dev $IF\n $NOPE\n}\n",
			want: "3 virtual_ipaddress {3\n  4 10.0.0.100/24 [dev] [eth0]\n  5 $NOPE\n}\n",
		},
		{
			name:  "sequence blocks are not supported",
			conf:  "~SEQ(i, 1, 3) a $i\nb\n",
			want:  "2 b\n",
			diags: []string{"keepalived.conf:1: ~SEQ: dropped: sequence and list blocks are not supported; expand them by hand"},
		},
		{
			name: "CRLF line ends",
			conf: "global_defs {\r\n router_id lb1\r\n}\r\n",
			want: "1 global_defs {1\n  2 router_id [lb1]\n}\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes, ds, err := parseString(t, tc.conf, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := dump(nodes); got != tc.want {
				t.Errorf("tree:\n%s\nwant:\n%s", got, tc.want)
			}
			if got, want := diagLines(ds), strings.Join(tc.diags, "\n"); got != want {
				t.Errorf("diagnostics:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestParseErrors: input that stops the parse gives one line-numbered error.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, conf, want string
	}{
		{"unclosed block names the line of its brace", "global_defs {\n router_id a\n\nvrrp_instance X\n{\n state MASTER\n", "keepalived.conf:5: vrrp_instance: '{' is never closed (keepalived: missing '}')"},
		{"unclosed one-line block", "a {\n", "keepalived.conf:1: a: '{' is never closed (keepalived: missing '}')"},
		{"multi-line definition", "$X=a \\\n b\n", "keepalived.conf:1: $X: multi-line parameter definitions are not supported; write the value on one line"},
		{"nesting too deep", strings.Repeat("a {\n", maxDepth+1), fmt.Sprintf("keepalived.conf:%d: blocks nested deeper than %d", maxDepth+1, maxDepth)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseString(t, tc.conf, nil)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if got := strings.TrimPrefix(e.Error(), "/etc/keepalived/"); got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
		})
	}
}

// TestInclude: "include FILENAME ... can include wildcards, including csh style brace
// expressions"; "any relative paths included from a file are relative to the directory of the
// including file itself". Cycles are an error.
func TestInclude(t *testing.T) {
	files := MapFS{
		"/etc/keepalived/conf.d/10-b.conf":     "b 2\n",
		"/etc/keepalived/conf.d/05-a.conf":     "a 1\ninclude sub/*.conf\n",
		"/etc/keepalived/conf.d/sub/x.conf":    "x 9\n",
		"/etc/keepalived/conf.d/README":        "not a conf\n",
		"/etc/keepalived/other/one.conf":       "one 1\n",
		"/etc/keepalived/other/two.conf":       "two 2\n",
		"/etc/keepalived/partial/instance.inc": "  priority 150\n}\n",
		"/etc/keepalived/sib/a.conf":           "include b.conf\na 1\n",
		"/etc/keepalived/sib/b.conf":           "b 2\n",
	}
	for _, tc := range []struct {
		name, conf, want string
		diags            []string
		err              string
	}{
		{
			name: "glob, sorted, nested include relative to the including file",
			conf: "top 0\ninclude conf.d/*.conf\nlast 3\n",
			want: "1 top [0]\n1 a [1]\n1 x [9]\n1 b [2]\n3 last [3]\n",
		},
		{
			name: "brace expression, in the order of the alternatives",
			conf: "include other/{two,one}.conf\n",
			want: "1 two [2]\n1 one [1]\n",
		},
		{
			name: "absolute path, and an include inside a block",
			conf: "vrrp_instance X {\n include /etc/keepalived/partial/instance.inc\n",
			want: "1 vrrp_instance [X] {1\n  1 priority [150]\n}\n",
		},
		{
			name: "a file including a file the same glob matched later is no cycle",
			conf: "include sib/*.conf\n",
			want: "1 b [2]\n2 a [1]\n1 b [2]\n",
		},
		{
			name:  "no match is reported and skipped",
			conf:  "include nothing/*.conf\na 1\n",
			want:  "2 a [1]\n",
			diags: []string{`keepalived.conf:1: include: no file matches "nothing/*.conf" (keepalived: No config files matched); nothing included`},
		},
		{
			name: "includer and includea are includes too",
			conf: "includer other/one.conf\nincludea other/two.conf\n",
			want: "1 one [1]\n1 two [2]\n",
		},
		{
			name: "a file including itself",
			conf: "include keepalived.conf\n",
			err:  "keepalived.conf:1: include: include cycle: /etc/keepalived/keepalived.conf -> /etc/keepalived/keepalived.conf",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes, ds, err := parseString(t, tc.conf, files)
			if tc.err != "" {
				if err == nil || strings.TrimPrefix(err.Error(), "/etc/keepalived/") != tc.err {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := dump(nodes); got != tc.want {
				t.Errorf("tree:\n%s\nwant:\n%s", got, tc.want)
			}
			if got, want := diagLines(ds), strings.Join(tc.diags, "\n"); got != want {
				t.Errorf("diagnostics:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestIncludeCycle: a cycle through two files is named with the chain, at the include's line.
func TestIncludeCycle(t *testing.T) {
	files := MapFS{
		"/etc/keepalived/a.conf": "x 1\n\ninclude b.conf\n",
		"/etc/keepalived/b.conf": "include a.conf\n",
	}
	_, _, err := parseString(t, "include a.conf\n", files)
	want := "/etc/keepalived/b.conf:1: include: include cycle: /etc/keepalived/keepalived.conf -> /etc/keepalived/a.conf -> /etc/keepalived/b.conf -> /etc/keepalived/a.conf"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

// TestIncludeOS runs includes on the real file system: globs, relative directories, a directory
// and an executable among the matches (keepalived skips both), and positions that name each file.
func TestIncludeOS(t *testing.T) {
	dir := t.TempDir()
	write(t, dir+"/keepalived.conf", "global_defs {\n include conf.d/*\n}\n")
	write(t, dir+"/conf.d/a.conf", "router_id lb1\n")
	write(t, dir+"/conf.d/b.sh", "x\n")
	chmod(t, dir+"/conf.d/b.sh", 0o755)
	mkdir(t, dir+"/conf.d/c.d")
	nodes, ds, err := Parse(dir+"/keepalived.conf", ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dump(nodes), "1 global_defs {1\n  1 router_id [lb1]\n}\n"; got != want {
		t.Errorf("tree:\n%s\nwant:\n%s", got, want)
	}
	if got := nodes[0].Block[0].Pos.File; got != dir+"/conf.d/a.conf" {
		t.Errorf("position names %s, want the included file", got)
	}
	got := diagLines(ds)
	for _, w := range []string{"b.sh is executable", "c.d is a directory"} {
		if !strings.Contains(got, w) {
			t.Errorf("diagnostics %q lack %q", got, w)
		}
	}
}

func TestExpandBraces(t *testing.T) {
	for in, want := range map[string]string{
		"a{b,c}d":       "abd acd",
		"{a,b}{1,2}":    "a1 a2 b1 b2",
		"x{a,{b,c}}y":   "xay xby xcy",
		"{single}":      "{single}",
		"noop":          "noop",
		`\{a,b}`:        `\{a,b}`,
		"{,foo/}x.conf": "x.conf foo/x.conf",
		"{unclosed,a":   "{unclosed,a",
	} {
		got, err := expandBraces(in)
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("expandBraces(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := expandBraces(strings.Repeat("{a,b}", 20)); err == nil {
		t.Error("a 2^20 expansion is not refused")
	}
}
