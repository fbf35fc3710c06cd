package election

import (
	"slices"
	"testing"
)

// SetChecks replaces the checks: a removed failing check no longer withdraws the candidacy, an
// added failing one does, and a bad list changes nothing.
func TestGateSetChecks(t *testing.T) {
	el := &gated{}
	g, err := NewGate(el, 100, []Check{{Name: "a", Up: true}, {Name: "b", Up: false}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	added, removed, err := g.SetChecks([]Check{{Name: "a", Up: true}, {Name: "c", Up: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(added, []string{"c"}) || !slices.Equal(removed, []string{"b"}) {
		t.Fatalf("SetChecks = +%v -%v, want +[c] -[b]", added, removed)
	}
	if ok, _ := g.Eligible(); !ok {
		t.Fatal("not eligible once the failing check is removed")
	}
	g.Set("b", false) // gone: ignored
	if ok, _ := g.Eligible(); !ok {
		t.Fatal("a removed check's Set withdrew the candidacy")
	}
	if _, _, err := g.SetChecks([]Check{{Name: "a"}, {Name: "a"}}); err == nil {
		t.Fatal("SetChecks with a duplicate name: no error")
	}
	if v := g.Verdicts(); len(v) != 2 || !v["a"] || !v["c"] {
		t.Fatalf("Verdicts after a refused SetChecks = %v, want a and c passing", v)
	}
	g.Set("c", false)
	if want := []bool{false, true, false}; !slices.Equal(el.eligible, want) {
		t.Fatalf("SetEligible calls %v, want %v", el.eligible, want)
	}
}
