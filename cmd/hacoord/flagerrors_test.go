package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every bad flag is reported at once, each naming itself, together with the configuration's own
// problems (what the other flags and the file make of it), not the first bad flag alone; the
// daemon and check-config both exit 2.
func TestEveryFlagErrorAtOnce(t *testing.T) {
	bad := []string{"--lease-ttl", "soon", "--vip=10.0.0.300/24", "--bogus", "--priority", "high", "--backend", "consul", "--garp-count"}
	want := []string{
		`invalid argument "soon" for "--lease-ttl" flag`,
		`invalid argument "10.0.0.300/24" for "--vip" flag`,
		`unknown flag: --bogus`,
		`invalid argument "high" for "--priority" flag`,
		`flag needs an argument: --garp-count`,
		`--backend: "consul" is not etcd, zk or vrrp`, // a config error, beside the flag errors
	}
	for _, cmd := range [][]string{{"check-config"}, nil} {
		args := append(append(append([]string{}, cmd...), base...), bad...)
		code, _, stderr := runCLI(t, args...)
		if code != exitConfig {
			t.Fatalf("%q: exit %d, want %d; stderr: %s", args, code, exitConfig, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%q: stderr lacks %q:\n%s", args, w, stderr)
			}
		}
		if !strings.Contains(stderr, "6 problems:") {
			t.Errorf("%q: want 6 problems, one a line:\n%s", args, stderr)
		}
	}
}

// With --config, a bad flag and the file's problems come together.
func TestFlagErrorsWithTheFilesErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("backend: etcd\nendpoints: [ftp://e:2379]\ninterface: lo\nvips: [10.0.0.100/24]\nname: n1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "check-config", "--config", p, "--lease-ttl", "soon", "-Z")
	if code != exitConfig {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	for _, w := range []string{`"soon" for "--lease-ttl"`, `unknown shorthand flag: 'Z'`, "endpoints[0]"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

func TestOffendingFindsTheArgument(t *testing.T) {
	errs, _, fv, _ := parseEveryFlag([]string{"--vip", "10.0.0.1/24", "--lease-ttl=x", "--vip", "bad", "--", "--nope"})
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), `"x" for "--lease-ttl"`) || !strings.Contains(errs[1].Error(), `"bad" for "--vip"`) {
		t.Fatalf("errors %v", errs)
	}
	if got := fv.instance.VIPs; len(got) != 1 || got[0].Prefix.String() != "10.0.0.1/24" {
		t.Fatalf("the good flags gave VIPs %v, want the one good VIP once", got)
	}
}
