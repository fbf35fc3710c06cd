package keepalivedconf

import (
	"reflect"
	"testing"
	"time"
)

// TestSplitQuotedEscaped: keepalived.conf(5) "Quoted strings": ´abcd" efg h jkl "mnop´ is the
// single string ´abcd efg h jkl mnop´, ´abcd "efg h jkl" mnop´ the three strings ´abcd´, ´efg h
// jkl´ and ´mnop´; escapes as in the shell.
func TestSplitQuotedEscaped(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{`abcd" efg h jkl "mnop`, []string{"abcd efg h jkl mnop"}, true},
		{`abcd "efg h jkl" mnop`, []string{"abcd", "efg h jkl", "mnop"}, true},
		{`/bin/sh -c 'echo "a b"'`, []string{"/bin/sh", "-c", `echo "a b"`}, true},
		{`a\ b \"c\" \x41\101\n\t\cA \\ \q`, []string{"a b", `"c"`, "AA\n\t\x01", `\`, "q"}, true},
		{`''`, []string{""}, true},
		{`"unterminated`, nil, false},
		{`trailing\`, nil, false},
	} {
		got, ok := splitQuotedEscaped(tc.in)
		if ok != tc.ok || (ok && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("splitQuotedEscaped(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestParseValues: <TIMER> "is a time value in seconds, including fractional seconds, e.g.
// 2.71828 or 3; resolution of timer is micro-seconds"; <BOOL> "is one of on|off|true|false|yes|no".
func TestParseValues(t *testing.T) {
	for in, want := range map[string]time.Duration{"3": 3 * time.Second, "2.71828": 2718280 * time.Microsecond,
		"0.5": 500 * time.Millisecond, ".25": 250 * time.Millisecond, "1.0000019": time.Second + time.Microsecond} {
		if got, ok := parseTimer(in, 0, 0); !ok || got != want {
			t.Errorf("parseTimer(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "-1", "+1", "1s", "1.2.3", ".", "abc", "99999999999999999999"} {
		if got, ok := parseTimer(bad, 0, 0); ok {
			t.Errorf("parseTimer(%q) = %v, want an error", bad, got)
		}
	}
	if _, ok := parseTimer("256", 0, 255*time.Second); ok {
		t.Error("parseTimer above the maximum accepted")
	}
	for in, want := range map[string]bool{"on": true, "YES": true, "true": true, "off": false, "no": false, "false": false} {
		if got, ok := parseBool(in); !ok || got != want {
			t.Errorf("parseBool(%q) = %v, %v", in, got, ok)
		}
	}
	if _, ok := parseBool("maybe"); ok {
		t.Error(`parseBool("maybe") accepted`)
	}
	if _, ok := parseUint("+5", 0, 10); ok {
		t.Error(`parseUint("+5") accepted`)
	}
}
