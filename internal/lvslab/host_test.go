//go:build !lvsvm

package lvslab

import "testing"

// TestHostBaselineBench is the host's side of `make bench-lvs`: the same lab without IPVS (each
// director answers for the VIP itself), the same crash of the master, on this machine's kernel
// without emulation. Its outage is what the VM's figures are compared with. It runs only when
// LVSLAB_RUNS is set.
func TestHostBaselineBench(t *testing.T) {
	n := runs()
	if n == 0 {
		t.Skip("a bench: set LVSLAB_RUNS=n (make bench-lvs)")
	}
	l := NewLab(t, Plain, "")
	benchFailover(t, l, "host plain", n)
}
