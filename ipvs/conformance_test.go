package ipvs

import (
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"

	cipvs "github.com/cloudflare/ipvs"

	"github.com/hacoord/hacoord/ipvs/ipvstest"
)

// clientConformance checks that c fails the way the kernel does. It runs against the fake here and
// against the real kernel in the VM (vm_test.go), which is what makes the fake trustworthy. c must
// start with an empty table and is left empty.
func clientConformance(t *testing.T, c Client) {
	t.Helper()
	svc := cipvs.Service{Address: netip.MustParseAddr("10.9.0.1"), Port: 80, Protocol: cipvs.TCP, Family: cipvs.INET, Scheduler: "rr"}
	dest := cipvs.Destination{Address: netip.MustParseAddr("10.9.0.11"), Port: 80, Family: cipvs.INET, FwdMethod: cipvs.DirectRoute, Weight: 1}
	withMask := svc
	withMask.Netmask = hostMask(INET)
	step := func(name string, err, want error) {
		t.Helper()
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	_, err := c.Services()
	step("Services on an empty table", err, os.ErrNotExist)
	step("CreateService without netmask", c.CreateService(svc), syscall.EINVAL)
	unknown := withMask
	unknown.Scheduler = "nosuch"
	step("CreateService with an unknown scheduler", c.CreateService(unknown), syscall.ENOENT)
	step("UpdateService of a missing service", c.UpdateService(withMask), syscall.ESRCH)
	step("RemoveService of a missing service", c.RemoveService(withMask), syscall.ESRCH)
	step("CreateService", c.CreateService(withMask), nil)
	step("CreateService again", c.CreateService(withMask), syscall.EEXIST)
	_, err = c.Destinations(withMask)
	step("Destinations of an empty service", err, os.ErrNotExist)
	step("UpdateDestination of a missing destination", c.UpdateDestination(withMask, dest), syscall.ENOENT)
	step("RemoveDestination of a missing destination", c.RemoveDestination(withMask, dest), syscall.ENOENT)
	step("CreateDestination", c.CreateDestination(withMask, dest), nil)
	step("CreateDestination again", c.CreateDestination(withMask, dest), syscall.EEXIST)
	v6 := dest
	v6.Address, v6.Family = netip.MustParseAddr("2001:db8::11"), cipvs.INET6
	step("CreateDestination of another family (DR)", c.CreateDestination(withMask, v6), syscall.EINVAL)
	dest.Weight = 5
	step("UpdateDestination", c.UpdateDestination(withMask, dest), nil)
	ds, err := c.Destinations(withMask)
	if err != nil || len(ds) != 1 || ds[0].Weight != 5 {
		t.Errorf("Destinations after update: %+v, %v", ds, err)
	}
	ss, err := c.Services()
	if err != nil || len(ss) != 1 || ss[0].Flags&cipvs.ServiceHashed == 0 || ss[0].Netmask != withMask.Netmask {
		t.Errorf("Services: %+v, %v (want one, hashed, netmask kept)", ss, err)
	}
	step("RemoveDestination", c.RemoveDestination(withMask, dest), nil)
	step("RemoveService", c.RemoveService(withMask), nil)
	_, err = c.Services()
	step("Services at the end", err, os.ErrNotExist)
}

func TestFakeConformance(t *testing.T) {
	clientConformance(t, ipvstest.NewFake())
}
