package keepalivedconf

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Value parsing as keepalived's lib/parser.c does it (read_unsigned, read_int, read_timer,
// read_decimal_unsigned, check_true_false).

// parseUint reads a decimal unsigned integer in [lo, hi].
func parseUint(s string, lo, hi uint64) (uint64, bool) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, false
	}
	return v, true
}

// parseInt reads a decimal integer in [lo, hi].
func parseInt(s string, lo, hi int64) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, false
	}
	return v, true
}

// parseTimer reads a non-negative decimal number of seconds ("2", "0.5", "2.71828") with
// keepalived's resolution, microseconds; max bounds it (0: keepalived's TIMER_MAXIMUM, about 1
// day... we only guard against overflow).
func parseTimer(s string, lo, hi time.Duration) (time.Duration, bool) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" {
		return 0, false
	}
	for _, part := range []string{whole, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return 0, false
			}
		}
	}
	var secs uint64
	if whole != "" {
		v, err := strconv.ParseUint(whole, 10, 64)
		if err != nil || v > uint64(math.MaxInt64/int64(time.Second)) {
			return 0, false
		}
		secs = v
	}
	if len(frac) > 6 {
		frac = frac[:6] // keepalived keeps microseconds
	}
	var us uint64
	if frac != "" {
		v, _ := strconv.ParseUint(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
		us = v
	}
	d := time.Duration(secs)*time.Second + time.Duration(us)*time.Microsecond
	if d < lo || (hi > 0 && d > hi) {
		return 0, false
	}
	return d, true
}

// parseBool reads keepalived's <BOOL>: on|off|true|false|yes|no.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "on", "true", "yes":
		return true, true
	case "off", "false", "no":
		return false, true
	}
	return false, false
}

// splitQuotedEscaped splits s into words as keepalived's alloc_strvec_quoted_escaped does: white
// space separates words; "..." and '...' group (the quotes are removed, adjacent text joins the
// word); a backslash escapes as in the shell (\n, \t, \xHH, \NNN octal, \cC, and \C for any
// other C). ok is false on an unterminated quote or a trailing backslash.
func splitQuotedEscaped(s string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i >= len(s) {
				return words, false
			}
			cur.WriteByte(unescape(s, &i))
			inWord = true
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case isSpace(c):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return words, false
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, true
}

// unescape decodes the escape whose letter is at s[*i], leaving *i on its last character.
func unescape(s string, i *int) byte {
	c := s[*i]
	switch c {
	case 'a':
		return '\a'
	case 'b':
		return '\b'
	case 'E':
		return 0x1b
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'v':
		return '\v'
	case 'x':
		if *i+1 < len(s) && isHex(s[*i+1]) {
			var v byte
			for *i+1 < len(s) && isHex(s[*i+1]) {
				*i++
				v = v<<4 | hexVal(s[*i])
			}
			return v
		}
	case 'c':
		if *i+1 < len(s) {
			*i++
			return s[*i] & 0x1f
		}
	}
	if c >= '0' && c <= '7' {
		v := c - '0'
		for n := 0; n < 2 && *i+1 < len(s) && s[*i+1] >= '0' && s[*i+1] <= '7'; n++ {
			*i++
			v = v<<3 | (s[*i] - '0')
		}
		return v
	}
	return c
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func hexVal(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// splitScript returns the program and arguments of a script keyword ("script", "notify_master",
// "misc_path", ...) and the words after it (keepalived's optional user and group), as keepalived
// does: the raw statement is split with quotes and escapes, and its first argument split again
// into the command line. ok is false when the quoting is broken or no command is given.
func splitScript(n *Node) (argv, rest []string, ok bool) {
	words, ok := splitQuotedEscaped(n.Raw)
	if !ok || len(words) < 2 {
		return nil, nil, false
	}
	argv, ok = splitQuotedEscaped(words[1])
	if !ok || len(argv) == 0 {
		return nil, nil, false
	}
	return argv, words[2:], true
}
