package fencing

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHookGetsTokenAndArgs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	h := Hook{Path: script(t, `echo "$1 $2 $3 $4 $HACOORD_TERM $HACOORD_REASON" > `+out), Timeout: 5 * time.Second}
	if err := h.Run(t.Context(), Event{Group: "web", Node: "n1", Role: "master", Term: 42, Reason: "elected"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if got := strings.TrimSpace(string(b)); got != "web n1 master 42 42 elected" {
		t.Fatalf("hook saw %q", got)
	}
}

func TestHookFailureCarriesOutput(t *testing.T) {
	h := Hook{Path: script(t, `echo "storage refuses token $HACOORD_TERM"; exit 3`)}
	err := h.Run(t.Context(), Event{Role: "master", Term: 7})
	if err == nil || !strings.Contains(err.Error(), "storage refuses token 7") {
		t.Fatalf("err = %v, want the hook's output", err)
	}
}

func TestHookTimeoutKillsProcessGroup(t *testing.T) {
	h := Hook{Path: script(t, `sleep 60 & sleep 60`), Timeout: 200 * time.Millisecond}
	start := time.Now()
	err := h.Run(t.Context(), Event{Role: "master", Term: 1})
	if err == nil {
		t.Fatal("a hung hook did not fail")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("hung hook held the caller for %v", d)
	}
}

func TestNotifierRunsInOrderAndDrainsOnStop(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	n, err := NewNotifier(Hook{Path: script(t, `echo "$3 $4" >> `+out), Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	n.Notify(Event{Role: "master", Term: 1})
	n.Notify(Event{Role: "backup", Term: 1})
	cancel() // events queued before the stop still run
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if got := string(b); got != "master 1\nbackup 1\n" {
		t.Fatalf("notify order = %q", got)
	}
}

func TestDeadlineAndMargin(t *testing.T) {
	sent := time.Now()
	if d := Deadline(sent, 2*time.Second, DefaultMargin(2*time.Second)); d.Sub(sent) != 1800*time.Millisecond {
		t.Fatalf("deadline = sent+%v, want 1.8s", d.Sub(sent))
	}
	for ttl, want := range map[time.Duration]time.Duration{time.Second: 100 * time.Millisecond, 30 * time.Second: time.Second, 5 * time.Second: 500 * time.Millisecond} {
		if got := DefaultMargin(ttl); got != want {
			t.Errorf("DefaultMargin(%v) = %v, want %v", ttl, got, want)
		}
	}
	if CheckMargin(2*time.Second, 1500*time.Millisecond) == nil || CheckMargin(2*time.Second, 0) == nil || CheckMargin(2*time.Second, 200*time.Millisecond) != nil {
		t.Fatal("CheckMargin accepts or refuses the wrong margins")
	}
}
