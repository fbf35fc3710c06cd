package lab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// failingStore is a Store whose Start fails.
type failingStore struct{}

var errStoreDown = errors.New("store will not start")

func (failingStore) Backend() string                       { return "etcd" }
func (failingStore) Start(context.Context, StoreEnv) error { return errStoreDown }
func (failingStore) Endpoints() []string                   { return nil }
func (failingStore) Stop() error                           { return nil }
func (failingStore) Tail(int) string                       { return "" }

// A lab whose store does not start returns the store's error (it used to panic in its clean-up)
// and leaves none of the namespaces it had built. Options.Dir need not exist yet.
func TestNewFailureLeavesNothing(t *testing.T) {
	skipShort(t)
	testenv.RequireRoot(t)
	if buildErr != nil {
		t.Fatalf("building the lab binaries: %v", buildErr)
	}
	ours := func() []string {
		names, err := netnstest.Leftovers()
		if err != nil {
			t.Fatal(err)
		}
		var mine []string
		for _, n := range names {
			if pid, ok := ownerPID(n); ok && pid == os.Getpid() {
				mine = append(mine, n)
			}
		}
		return mine
	}
	before := ours()
	dir := filepath.Join(t.TempDir(), "not", "yet")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, Options{Backend: "etcd", Store: failingStore{}, TTL: testTTL, HacoordBin: hacoordBin, LabBin: labBin, Dir: dir})
	if !errors.Is(err, errStoreDown) || l != nil {
		t.Fatalf("New = %v, %v; want no lab and the store's error", l, err)
	}
	if after := ours(); len(after) != len(before) {
		t.Errorf("namespaces of this process: %v before New, %v after it failed", before, after)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("log directory: %v", err)
	}
}
