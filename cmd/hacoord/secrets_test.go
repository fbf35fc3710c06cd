package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// loadArgs decodes a daemon command line (and the file body, if not empty) as the daemon does.
func loadArgs(t *testing.T, body string, args ...string) (settings, error) {
	t.Helper()
	fv := defaultFlagValues()
	fs := pflag.NewFlagSet("hacoord", pflag.ContinueOnError)
	registerFlags(fs, &fv)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	conf := ""
	if body != "" {
		conf = filepath.Join(t.TempDir(), "hacoord.yaml")
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return load(fs, &fv, conf)
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Each secret comes from its flag, its file flag, the environment or the YAML, in that order of
// precedence; a file's trailing newline is dropped; errors name the setting and the file, never
// the secret.
func TestSecretsPrecedence(t *testing.T) {
	for _, v := range []string{"HACOORD_ETCD_PASSWORD", "ETCDCTL_PASSWORD", "HACOORD_ETCD_PASSWORD_FILE", "HACOORD_ZK_AUTH",
		"HACOORD_ZK_AUTH_FILE", "HACOORD_VRRP_AUTH_PASS", "HACOORD_VRRP_AUTH_PASS_FILE"} {
		t.Setenv(v, "")
	}
	fromFile := secretFile(t, "from-file\n")
	other := secretFile(t, "other-file\r\n")
	empty := secretFile(t, "\n")
	twoLines := secretFile(t, "a\nb\n")
	yamlPW := "etcd: {user: root, password: from-yaml}\n"
	yamlFile := "etcd: {user: root, password_file: " + fromFile + "}\n"
	cases := []struct {
		name string
		env  map[string]string
		body string
		args []string
		want string // the etcd password, or the error's text when fail
		fail []string
	}{
		{name: "flag beats all", env: map[string]string{"HACOORD_ETCD_PASSWORD": "from-env"}, body: yamlFile,
			args: []string{"--password", "from-flag"}, want: "from-flag"},
		{name: "file flag", env: map[string]string{"HACOORD_ETCD_PASSWORD": "from-env"}, body: yamlPW,
			args: []string{"--password-file", other}, want: "other-file"},
		{name: "environment beats the file", env: map[string]string{"HACOORD_ETCD_PASSWORD": "from-env"}, body: yamlPW, want: "from-env"},
		{name: "etcdctl's variable", env: map[string]string{"ETCDCTL_PASSWORD": "etcdctl"}, want: "etcdctl"},
		{name: "ours before etcdctl's", env: map[string]string{"ETCDCTL_PASSWORD": "etcdctl", "HACOORD_ETCD_PASSWORD": "ours"}, want: "ours"},
		{name: "variable naming a file", env: map[string]string{"HACOORD_ETCD_PASSWORD_FILE": other}, body: yamlPW, want: "other-file"},
		{name: "password_file", body: yamlFile, want: "from-file"},
		{name: "password", body: yamlPW, want: "from-yaml"},
		{name: "both keys", body: "etcd: {user: root, password: x, password_file: " + fromFile + "}\n",
			fail: []string{"etcd.password and etcd.password_file: give one"}},
		{name: "both flags", args: []string{"--user", "root", "--password", "x", "--password-file", fromFile},
			fail: []string{"--password and --password-file: give one"}},
		{name: "missing file", args: []string{"--user", "root", "--password-file", "/nonexistent/pw"},
			fail: []string{"--password-file: open /nonexistent/pw: no such file or directory"}},
		{name: "missing file in YAML", body: "etcd: {user: root, password_file: /nonexistent/pw}\n",
			fail: []string{"etcd.password_file: open /nonexistent/pw"}},
		{name: "missing file in the environment", env: map[string]string{"HACOORD_ETCD_PASSWORD_FILE": "/nonexistent/pw"},
			fail: []string{"$HACOORD_ETCD_PASSWORD_FILE: open /nonexistent/pw"}},
		{name: "empty file", args: []string{"--password-file", empty}, fail: []string{"--password-file: " + empty + " is empty"}},
		{name: "two lines", args: []string{"--password-file", twoLines}, fail: []string{"more than one line"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			s, err := loadArgs(t, c.body, c.args...)
			if c.fail != nil {
				if err == nil {
					t.Fatalf("no error; password %q", s.daemon.Etcd.Password)
				}
				for _, f := range c.fail {
					if !strings.Contains(err.Error(), f) {
						t.Errorf("error %q does not say %q", err, f)
					}
				}
				if strings.Contains(err.Error(), "from-file") || strings.Contains(err.Error(), "other-file") {
					t.Errorf("the error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.daemon.Etcd.Password; got != c.want {
				t.Fatalf("password %q, want %q", got, c.want)
			}
		})
	}
}

// The ZooKeeper digest and the VRRP password have files and variables too; the VRRP variable
// only fills an instance that sets no password of its own.
func TestZKAndVRRPSecrets(t *testing.T) {
	t.Setenv("HACOORD_ZK_AUTH", "")
	t.Setenv("HACOORD_ZK_AUTH_FILE", secretFile(t, "hacoord:zk-secret\n"))
	t.Setenv("HACOORD_VRRP_AUTH_PASS", "env-pass")
	t.Setenv("HACOORD_VRRP_AUTH_PASS_FILE", "")
	own := secretFile(t, "own-pass\n")
	s, err := loadArgs(t, `backend: vrrp
interface: eth0
vrrp: {version: 2}
instances:
  - {name: A, vips: [10.0.0.1/24], vrrp: {vrid: 1, auth_pass_file: `+own+`}}
  - {name: B, vips: [10.0.0.2/24], vrrp: {vrid: 2, auth_pass: inline}}
  - {name: C, vips: [10.0.0.3/24], vrrp: {vrid: 3}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if s.daemon.ZK.Auth != "hacoord:zk-secret" {
		t.Errorf("zookeeper.auth %q", s.daemon.ZK.Auth)
	}
	var got []string
	for _, in := range s.instances {
		got = append(got, in.keys.VRRP.AuthPass)
	}
	if strings.Join(got, ",") != "own-pass,inline,env-pass" {
		t.Errorf("VRRP passwords %q, want own-pass,inline,env-pass", got)
	}
	s, err = loadArgs(t, "", "--zk-auth-file", secretFile(t, "u:p"), "--auth-pass-file", own)
	if err != nil || s.daemon.ZK.Auth != "u:p" || s.instances[0].keys.VRRP.AuthPass != "own-pass" {
		t.Fatalf("flags: zk %q vrrp %q err %v", s.daemon.ZK.Auth, s.instances[0].keys.VRRP.AuthPass, err)
	}
}

// check-config shows where the password comes from, never the password.
func TestCheckConfigHidesFileSecret(t *testing.T) {
	t.Setenv("HACOORD_ETCD_PASSWORD", "")
	t.Setenv("ETCDCTL_PASSWORD", "")
	pw := secretFile(t, "s3cret-in-file\n")
	code, out, stderr := runCLI(t, append([]string{"check-config", "--user", "root", "--password-file", pw}, base...)...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(out+stderr, "s3cret-in-file") || !strings.Contains(out, pw) {
		t.Fatalf("check-config output shows the secret or not its file:\n%s", out)
	}
}

// The daemon against an etcd with client TLS and authentication: the password from a file named
// by HACOORD_ETCD_PASSWORD_FILE makes it master; a wrong password makes it exit at once with a
// configuration error (status 2) that names the settings and not the password.
func TestDaemonEtcdTLSAndPassword(t *testing.T) {
	testenv.RequireRoot(t)
	t.Setenv("HACOORD_ETCD_PASSWORD", "")
	t.Setenv("ETCDCTL_PASSWORD", "")
	pki := etcdtest.NewPKI(t)
	srv := etcdtest.Start(t, etcdtest.WithClientTLS(pki, true))
	srv.EnableAuth(t, clientv3.Config{TLS: tlsClient(t, pki)}, "right-password")
	a, _ := twoNodes(t)
	body := `name: %[1]s
endpoints: [%[2]s]
lease_ttl: 1s
fence_guard: false
etcd: {cacert: ` + pki.CA + `, cert: ` + pki.ClientCert + `, key: ` + pki.ClientKey + `, user: root}
interface: eth0
group: web
status_file: %[3]s/web.json
vips: [192.0.2.101/24]
`
	t.Run("wrong password", func(t *testing.T) {
		t.Setenv("HACOORD_ETCD_PASSWORD_FILE", secretFile(t, "wrong-password\n"))
		dir := t.TempDir()
		p := filepath.Join(dir, "hacoord.yaml")
		if err := os.WriteFile(p, []byte(strings.NewReplacer("%[1]s", "n1", "%[2]s", srv.URLs()[0], "%[3]s", dir).Replace(body)), 0o600); err != nil {
			t.Fatal(err)
		}
		log := &syncBuffer{}
		start := time.Now()
		code := -1
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.Do(func() error { code = run(ctx, []string{"--config", p}, log, log); return nil })
		took := time.Since(start)
		out := log.String()
		if code != exitConfig || !strings.Contains(out, "authentication failed") || !strings.Contains(out, "--password-file") {
			t.Fatalf("exit %d after %v, want %d naming the failed authentication and the settings; output:\n%s", code, took, exitConfig, out)
		}
		if took > 10*time.Second {
			t.Errorf("took %v to give up: a retry loop", took)
		}
		if strings.Contains(out, "wrong-password") {
			t.Errorf("the output shows the password:\n%s", out)
		}
		t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), out[strings.LastIndex(out, "hacoord: "):])
	})
	t.Run("right password", func(t *testing.T) {
		t.Setenv("HACOORD_ETCD_PASSWORD_FILE", secretFile(t, "right-password\n"))
		n := startNode(t, a, "n1", srv.URLs()[0], body)
		eventually(t, "master over TLS with the password from the file", func() bool {
			return n.has(t, "192.0.2.101") && n.status(t, "web").Role == "master"
		}, n)
		n.exit(t)
		if strings.Contains(n.log.String(), "right-password") {
			t.Errorf("the log shows the password")
		}
	})
}

func tlsClient(t *testing.T, pki etcdtest.PKI) *tls.Config {
	t.Helper()
	tc, err := transport.TLSInfo{TrustedCAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return tc
}
