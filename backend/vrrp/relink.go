package vrrp

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// An interface deleted and created again under its name (a container's eth0 after `docker network
// disconnect` and `connect`) has a new index. The RawConn's socket stays bound to the old one
// (SO_BINDTODEVICE and the group membership hold an index): it hears nothing and every send fails
// with ENODEV. relink moves it to the interface of that name now. It asks the socket itself
// (SIOCGIFINDEX resolves the name in the socket's network namespace, whatever the calling thread's),
// so it works from any goroutine, as the rest of the RawConn does.

// relink binds the IPv4 socket to the interface now named c.ifi.Name, and joins the group there,
// if its index changed; it reports whether it did. Safe to call concurrently with Read and Write.
func (c *RawConn) relink() (bool, error) {
	c.relinkMu.Lock()
	defer c.relinkMu.Unlock()
	if c.raw == nil || c.pc == nil {
		return false, nil
	}
	old := int(c.index.Load())
	var (
		index int
		ierr  error
	)
	err := c.raw.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq(c.ifi.Name)
		if err != nil {
			ierr = err
			return
		}
		if ierr = unix.IoctlIfreq(int(fd), unix.SIOCGIFINDEX, ifr); ierr != nil {
			return
		}
		if index = int(ifr.Uint32()); index != old {
			ierr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.ifi.Name)
		}
	})
	if err = errors.Join(err, ierr); err != nil {
		return false, fmt.Errorf("vrrp: interface %s: %w", c.ifi.Name, err)
	}
	if index == old {
		return false, nil
	}
	ifi := *c.ifi
	ifi.Index = index
	if err := c.pc.SetMulticastInterface(&ifi); err != nil {
		return false, fmt.Errorf("vrrp: interface %s (index %d): multicast interface: %w", ifi.Name, index, err)
	}
	if c.group {
		if err := c.pc.JoinGroup(&ifi, &net.IPAddr{IP: MulticastGroup.AsSlice()}); err != nil {
			return false, fmt.Errorf("vrrp: interface %s (index %d): join %s: %w", ifi.Name, index, MulticastGroup, err)
		}
	}
	c.index.Store(int32(index))
	return true, nil
}

// isNoDevice reports whether err is the kernel's "no such device": the interface index is gone.
func isNoDevice(err error) bool { return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) }
