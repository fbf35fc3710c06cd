// Package lvslab is the LVS architecture of the keepalived guides, end to end: a client, two
// directors running the real hacoord daemon with `virtual_servers:` over an embedded etcd, and
// three real servers answering HTTP with their own names, each in a network namespace. Its tests
// send requests through the kernel's IPVS during director crashes, real-server deaths and with no
// real server left (the sorry server), in DR and in NAT mode.
//
// The IPVS tests (build tag lvsvm) need a kernel with IPVS: `make test-lvs` runs them inside the
// qemu VM of internal/qemutest, where the namespaces are the guest's; `make bench-lvs` adds the
// figures (LVSLAB_RUNS=n). The same lab without IPVS (the directors answer for the VIP themselves)
// runs on the host as the baseline the VM's figures are compared with.
package lvslab
