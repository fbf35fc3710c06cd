// Package exepages gives back the resident pages of the running program's own binary that it
// touched only while starting.
//
// Most of a Go daemon's resident memory is not heap but pages of its executable: the kernel maps
// the binary's text and read-only data in as they are touched, 64 KB around each fault, and keeps
// them mapped. Start-up (package initialisation, flag parsing, connecting, the first election)
// touches far more of the binary than the idle loop ever runs again. Release drops the process's
// mappings of those pages (madvise MADV_DONTNEED on the read-only mappings of /proc/self/exe). The
// pages stay in the page cache: what the program runs afterwards comes back with a minor fault and
// the same content, since a read-only private file mapping has no pages of its own to lose.
// Writable mappings (data, bss, heap, stacks) are never touched.
package exepages

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mapping is one read-only mapping of the executable that Release gave back.
type Mapping struct {
	Start, End uintptr
	Perms      string // "r-xp" (text) or "r--p" (read-only data)
}

// Release drops the process's resident pages of the read-only mappings of its own executable (text
// and read-only data) and returns the mappings it advised. It is safe at any time: a page that is
// needed again faults back in from the page cache.
func Release() ([]Mapping, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("exepages: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return nil, fmt.Errorf("exepages: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("exepages: %w", err)
	}
	ms := readOnlyMappings(maps, exe, st.Ino)
	for _, m := range ms {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.Start, m.End-m.Start, unix.MADV_DONTNEED); e != 0 {
			return nil, fmt.Errorf("exepages: madvise %x-%x %s: %w", m.Start, m.End, m.Perms, e)
		}
	}
	return ms, nil
}

// readOnlyMappings parses /proc/self/maps for the mappings of path (inode ino) that are private and
// neither writable nor shared: "r-xp" and "r--p" only.
func readOnlyMappings(maps []byte, path string, ino uint64) []Mapping {
	var out []Mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// 00400000-00c5c000 r-xp 00000000 08:01 1234 /usr/bin/hacoord
		f := strings.Fields(sc.Text())
		if len(f) < 6 || strings.Join(f[5:], " ") != path {
			continue
		}
		if f[1] != "r-xp" && f[1] != "r--p" {
			continue
		}
		if i, err := strconv.ParseUint(f[4], 10, 64); err != nil || i != ino {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || e <= s {
			continue
		}
		out = append(out, Mapping{Start: uintptr(s), End: uintptr(e), Perms: f[1]})
	}
	return out
}

// StartupDone is when Run releases first, counted from its start: once the program has had time
// to start (flags, package init, the first connection and election), and once more after a minute,
// for what a slow start (a store that was not up, a first campaign behind a master) touched later.
var StartupDone = []time.Duration{10 * time.Second, time.Minute}

// Every is how often Run releases after StartupDone. An idle daemon keeps touching code it had not
// run since the last release (the runtime's forced GC every 2 minutes, a reload, a failover), 64 KB
// around each fault: in the lab its file-backed RSS grew back from 7 to 12 MB within 4 minutes of
// the last release. What the idle loop uses faults back at once from the page cache, some hundreds
// of minor faults, well under a millisecond of CPU every 2 minutes.
const Every = 2 * time.Minute

// Run calls Release at each of after (from Run's start, ascending), then every every (none if 0),
// until ctx is done, telling report what came of each. It keeps one timer, armed only for the next
// release.
func Run(ctx context.Context, after []time.Duration, every time.Duration, report func([]Mapping, error)) {
	start := time.Now()
	next := func(i int) (time.Time, bool) {
		switch {
		case i < len(after):
			return start.Add(after[i]), true
		case every > 0:
			last := time.Duration(0)
			if len(after) > 0 {
				last = after[len(after)-1]
			}
			return start.Add(last + time.Duration(i-len(after)+1)*every), true
		}
		return time.Time{}, false
	}
	for i := 0; ; i++ {
		at, ok := next(i)
		if !ok {
			return
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ms, err := Release()
		if report != nil {
			report(ms, err)
		}
	}
}
