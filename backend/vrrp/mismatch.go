package vrrp

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// MismatchReason is the setting in which a router that sends adverts for this router's VRID differs
// from this one. Such adverts are dropped (one exception, see MismatchAdvertInt), so the two never
// form one virtual router: each may become master and hold the VIPs (split brain). The values are
// the `reason` label of the metric hacoord_vrrp_mismatched_adverts_total.
type MismatchReason string

// The reasons an advert for this VRID does not match, counted in Stats.Mismatched.
const (
	// MismatchVersion: another VRRP version (RFC 5798 §7.1). keepalived's default is version 2,
	// hacoord's 3.
	MismatchVersion MismatchReason = "version"
	// MismatchVIPs: another address count or list (RFC 3768 §7.1; keepalived's check).
	MismatchVIPs MismatchReason = "vips"
	// MismatchAuth: version 2, another auth type or password (RFC 3768 §7.1, keepalived's
	// auth_type PASS).
	MismatchAuth MismatchReason = "auth"
	// MismatchAdvertInt: another advert interval. Version 2 drops the advert (RFC 3768 §7.1);
	// version 3 accepts it (a backup learns the master's interval, RFC 5798 §6.4.2), but how soon a
	// backup takes over then depends on which router is master.
	MismatchAdvertInt MismatchReason = "advert-int"
)

// MismatchWarnInterval is how often at most a mismatch is logged again for one reason and source;
// the first is logged at once, so a misconfigured neighbour is named before this router's
// Master_Down_Interval can make it master beside it.
const MismatchWarnInterval = time.Minute

// maxMismatches bounds the mismatches a Machine remembers (the most recent), so a flood of adverts
// from forged sources cannot grow it.
const maxMismatches = 64

// Mismatch is a router whose adverts for this VRID do not match this router's configuration: it
// is what `hacoord status` shows and what the warnings say.
type Mismatch struct {
	Reason MismatchReason
	// Source is the IP source of the adverts: the other router's primary address.
	Source netip.Addr
	// Detail says what the last one carried and what this router expects (never a password).
	Detail string
	// Dropped is true when such adverts are dropped, so that Source does not join this virtual
	// router; false for the one kind that is accepted (MismatchAdvertInt in version 3).
	Dropped bool
	// Count is the number of such adverts from Source since this router started.
	Count uint64
	// First and Last are when the first and the last of them arrived.
	First, Last time.Time
}

// String renders m for logs and status lines.
func (m Mismatch) String() string {
	return fmt.Sprintf("%s from %s: %s (%d adverts, last %s)", m.Reason, m.Source, m.Detail, m.Count, m.Last.Format(time.RFC3339))
}

type mismatchKey struct {
	reason MismatchReason
	src    netip.Addr
}

type mismatchEntry struct {
	Mismatch
	warned time.Time // when MismatchWarning was last emitted
}

// mismatches remembers Mismatches by reason and source and rate-limits their warnings. The zero
// value is ready. It is the Machine's, stepped with the Machine's time.
type mismatches struct {
	m map[mismatchKey]*mismatchEntry
}

// add records one mismatched advert at now (dropped or not) and returns the updated Mismatch, and whether to warn
// about it now: the first time, and again once MismatchWarnInterval has passed since the last
// warning for that reason and source.
func (t *mismatches) add(now time.Time, reason MismatchReason, src netip.Addr, detail string, dropped bool) (Mismatch, bool) {
	if t.m == nil {
		t.m = map[mismatchKey]*mismatchEntry{}
	}
	k := mismatchKey{reason, src}
	e, ok := t.m[k]
	if !ok {
		if len(t.m) >= maxMismatches {
			t.evictOldest()
		}
		e = &mismatchEntry{Mismatch: Mismatch{Reason: reason, Source: src, First: now}}
		t.m[k] = e
	}
	e.Count++
	e.Last, e.Detail, e.Dropped = now, detail, dropped
	warn := e.warned.IsZero() || now.Sub(e.warned) >= MismatchWarnInterval
	if warn {
		e.warned = now
	}
	return e.Mismatch, warn
}

func (t *mismatches) evictOldest() {
	var oldest mismatchKey
	var at time.Time
	for k, e := range t.m {
		if at.IsZero() || e.Last.Before(at) {
			oldest, at = k, e.Last
		}
	}
	delete(t.m, oldest)
}

// list returns a copy of the Mismatches, sorted by reason and source.
func (t *mismatches) list() []Mismatch {
	l := make([]Mismatch, 0, len(t.m))
	for _, e := range t.m {
		l = append(l, e.Mismatch)
	}
	slices.SortFunc(l, func(a, b Mismatch) int {
		return cmp.Or(cmp.Compare(a.Reason, b.Reason), a.Source.Compare(b.Source))
	})
	return l
}

// recent returns the Mismatches whose last advert arrived within d before now.
func (t *mismatches) recent(now time.Time, d time.Duration) []Mismatch {
	var l []Mismatch
	for _, m := range t.list() {
		if now.Sub(m.Last) < d {
			l = append(l, m)
		}
	}
	return l
}

// authName names a version 2 auth type for the mismatch details.
func authName(t uint8) string {
	switch t {
	case AuthNone:
		return "none"
	case AuthSimple:
		return "PASS"
	case AuthAH:
		return "AH"
	}
	return fmt.Sprintf("%d", t)
}
