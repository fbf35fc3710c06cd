package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hacoord/hacoord/backend/etcd"
)

// Secrets (the etcd password, the ZooKeeper digest, the VRRP password) need not be given on the
// command line, where `ps` shows them: each can also come from a file or from the environment,
// etcdctl-style. Precedence, highest first (docs/config.md, "Secrets"):
//
//  1. the flag: --password, --zk-auth, --auth-pass;
//  2. its file flag: --password-file, --zk-auth-file, --auth-pass-file;
//  3. the environment: HACOORD_ETCD_PASSWORD (then ETCDCTL_PASSWORD), HACOORD_ZK_AUTH,
//     HACOORD_VRRP_AUTH_PASS, and the *_FILE variables naming a file; for VRRP only for an
//     instance that sets neither auth_pass nor auth_pass_file in the file;
//  4. the YAML key (etcd.password, zookeeper.auth, vrrp.auth_pass) or its _file key; giving both is
//     an error.
//
// A file holds the secret on its first and only line (a trailing newline is dropped). Errors name
// the flag, key or variable and the file, never the secret; check-config redacts it.

// secret is one secret setting and where it may come from.
type secret struct {
	val, file    *string
	key, fileKey string   // YAML keys (flagOf gives their flags)
	env          []string // variables holding the secret, in order
	envFile      string   // variable naming a file
	envFallback  bool     // the environment applies only when the YAML sets neither key
}

// resolveSecrets fills every secret of s from its flags, files or environment.
func resolveSecrets(s *settings) error {
	d := &s.daemon
	errs := []error{
		s.resolveSecret(nil, secret{val: &d.Etcd.Password, file: &d.Etcd.PasswordFile, key: "etcd.password",
			fileKey: "etcd.password_file", env: []string{"HACOORD_ETCD_PASSWORD", "ETCDCTL_PASSWORD"}, envFile: "HACOORD_ETCD_PASSWORD_FILE"}),
		s.resolveSecret(nil, secret{val: &d.ZK.Auth, file: &d.ZK.AuthFile, key: "zookeeper.auth",
			fileKey: "zookeeper.auth_file", env: []string{"HACOORD_ZK_AUTH"}, envFile: "HACOORD_ZK_AUTH_FILE"}),
	}
	for i := range s.instances {
		in := &s.instances[i]
		r := &in.keys.VRRP
		errs = append(errs, s.resolveSecret(in, secret{val: &r.AuthPass, file: &r.AuthPassFile, key: "vrrp.auth_pass",
			fileKey: "vrrp.auth_pass_file", env: []string{"HACOORD_VRRP_AUTH_PASS"}, envFile: "HACOORD_VRRP_AUTH_PASS_FILE",
			envFallback: true}))
	}
	if err := errors.Join(errs...); err != nil {
		return configError{err}
	}
	return nil
}

// resolveSecret applies the precedence to one secret of instance in (nil: daemon-wide).
func (s settings) resolveSecret(in *instanceSettings, c secret) error {
	flagged := func(key string) bool { f := flagOf(key); return f != "" && s.given[f] && (in == nil || !in.listed) }
	byFlag, byFileFlag := flagged(c.key), flagged(c.fileKey)
	switch {
	case byFlag && byFileFlag:
		return fmt.Errorf("--%s and --%s: give one", flagOf(c.key), flagOf(c.fileKey))
	case byFlag:
		*c.file = ""
		return nil
	case byFileFlag:
		return c.read(*c.file, "--"+flagOf(c.fileKey))
	}
	if !c.envFallback || (*c.val == "" && *c.file == "") {
		for _, e := range c.env {
			if v := os.Getenv(e); v != "" {
				*c.val, *c.file = v, ""
				return nil
			}
		}
		if p := os.Getenv(c.envFile); p != "" {
			return c.read(p, "$"+c.envFile)
		}
	}
	switch {
	case *c.val != "" && *c.file != "":
		return fmt.Errorf("%s and %s: give one", s.key(in, c.key, ""), s.key(in, c.fileKey, ""))
	case *c.file != "":
		return c.read(*c.file, s.key(in, c.fileKey, ""))
	}
	return nil
}

// read sets the secret from the first line of path; where names the setting that gave path.
func (c secret) read(path, where string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err) // the error names the file
	}
	v := strings.TrimRight(string(b), "\r\n")
	switch {
	case v == "":
		return fmt.Errorf("%s: %s is empty", where, path)
	case strings.ContainsAny(v, "\r\n"):
		return fmt.Errorf("%s: %s has more than one line; it must hold the secret alone", where, path)
	}
	*c.val, *c.file = v, path
	return nil
}

// storeRefused turns an error of a store that refused our credentials (or we its certificate)
// into a configuration error naming the settings to check: retrying would not help, so the
// daemon exits with status 2.
func storeRefused(err error) error {
	if err == nil || !errors.Is(err, etcd.ErrCredentials) {
		return err
	}
	return configError{fmt.Errorf("%w (check etcd.user/--user, the password: --password, --password-file, "+
		"$HACOORD_ETCD_PASSWORD or etcd.password_file, and the TLS files: --cacert, --cert, --key)", err)}
}
