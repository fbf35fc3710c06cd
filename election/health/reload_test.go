package health

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A reloaded Monitor starts a known check in its current verdict and a new one passing; a new
// check that fails is reported failing once it has run (fall 1).
func TestNewReloadedStartsFromVerdicts(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Scripts: []Script{
		{Name: "old-down", Script: "true", Interval: time.Hour},
		{Name: "old-up", Script: "true", Interval: time.Hour},
		{Name: "new", Script: "test ! -e " + flag, Interval: 20 * time.Millisecond},
	}}
	m, err := NewReloaded(cfg, map[string]bool{"old-down": false, "old-up": true, "gone": true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := map[string]bool{"old-down": false, "old-up": true, "new": true}
	got := map[string]bool{}
	for _, c := range m.Checks() {
		got[c.Name] = c.Up
	}
	if len(got) != len(want) || got["old-down"] || !got["old-up"] || !got["new"] {
		t.Fatalf("Checks() = %v, want %v", got, want)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s := newSink()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, s) }()
	s.wait(t, "new", false)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
