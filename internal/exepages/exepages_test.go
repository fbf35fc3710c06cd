package exepages

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// rssKB is a field of /proc/self/status ("RssFile", "RssAnon"), in kB.
func rssKB(t *testing.T, key string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

// mappedKB sums the Rss of the executable's mappings with one of perms (/proc/self/smaps).
func mappedKB(t *testing.T, perms ...string) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-"):
			in = strings.Join(f[5:], " ") == exe && slices.Contains(perms, f[1])
		case len(f) == 3 && f[0] == "Rss:" && in:
			k, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
	}
	return n
}

// written lives in the binary's writable data: Release must leave it alone (MADV_DONTNEED on a
// private writable mapping would hand back zero pages).
var written = [4096 * 4]byte{1}

// After Release the process holds far fewer pages of its binary, and goes on running with its
// data intact.
func TestReleaseGivesBackBinaryPages(t *testing.T) {
	for i := range written {
		written[i] = byte(i%251 + 1)
	}
	before, after := rssKB(t, "RssFile"), int64(0)
	beforeRO := mappedKB(t, "r-xp", "r--p")
	ms, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	afterRO := mappedKB(t, "r-xp", "r--p")
	after = rssKB(t, "RssFile")
	t.Logf("RssFile %d kB -> %d kB; the binary's read-only mappings %d kB -> %d kB (%d advised)", before, after, beforeRO, afterRO, len(ms))
	if len(ms) == 0 {
		t.Fatal("no read-only mapping of the executable found")
	}
	for _, m := range ms {
		if m.Perms != "r-xp" && m.Perms != "r--p" {
			t.Errorf("advised a %s mapping %x-%x", m.Perms, m.Start, m.End)
		}
	}
	if afterRO > beforeRO*3/4 || after >= before {
		t.Errorf("resident pages of the binary's read-only mappings %d kB -> %d kB (RssFile %d -> %d kB), want at least a quarter given back (the test itself faults some back at once)", beforeRO, afterRO, before, after)
	}
	for i := range written {
		if written[i] != byte(i%251+1) {
			t.Fatalf("written[%d] = %d after Release, want %d: writable data was dropped", i, written[i], i%251+1)
		}
	}
}

// Only the executable's private read-only mappings are candidates: not its writable data, not
// other files, not a file of the same name with another inode (the binary was replaced).
func TestReadOnlyMappings(t *testing.T) {
	maps := `00400000-00c5c000 r-xp 00000000 08:01 1234 /usr/bin/hacoord
00c5c000-01400000 r--p 0085c000 08:01 1234 /usr/bin/hacoord
01400000-01450000 rw-p 01000000 08:01 1234 /usr/bin/hacoord
01450000-01480000 rw-p 00000000 00:00 0
01480000-01490000 r--s 00000000 08:01 1234 /usr/bin/hacoord
7f0000000000-7f0000001000 r-xp 00000000 08:01 99 /usr/lib/other.so
7f0000002000-7f0000003000 r-xp 00000000 08:01 77 /usr/bin/hacoord
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
`
	got := readOnlyMappings([]byte(maps), "/usr/bin/hacoord", 1234)
	want := []Mapping{{0x400000, 0xc5c000, "r-xp"}, {0xc5c000, 0x1400000, "r--p"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
