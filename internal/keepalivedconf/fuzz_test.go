package keepalivedconf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzImport feeds arbitrary text to the whole import (lexer, includes, parser, interpretation,
// conversion, YAML). It must never panic; every diagnostic and error names a file, and every
// diagnostic a line; a successful import is valid YAML. The file may include the two files beside
// it, one of which includes itself. Crashers found are kept in testdata/fuzz/FuzzImport.
func FuzzImport(f *testing.F) {
	confs, _ := filepath.Glob("testdata/*.conf")
	for _, c := range confs {
		b, err := os.ReadFile(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	for _, s := range []string{
		"", "{", "}", "{{}}", "a {\n", "\"", "a \"b", "#", "!", "\\", "$A=1\n$A $B ${A} ${", "@lb1 x\n@^ y\n@",
		"include *\n", "include conf.d/{a,loop}.conf\n", "include {,,,}\n", "~SEQ(x,1,2)\n",
		"vrrp_instance {\n}\n", "vrrp_instance V {\n virtual_ipaddress {\n 1.2.3.4/99 dev\n }\n}\n",
		"vrrp_sync_group G { group { A A } }\nvrrp_instance A { interface e virtual_router_id 1 virtual_ipaddress { ::1 } }\n",
		"virtual_server fwmark { real_server { HTTP_GET { url { status_code 1-2-3 } } } }\n",
		"vrrp_script s { script \"a\\x41\\101\\c\" }\nvrrp_instance I { track_script { s weight 254 reverse } }\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		fs := MapFS{
			confPath:                           data,
			"/etc/keepalived/conf.d/a.conf":    "vrrp_script chk {\n script /bin/true\n}\n",
			"/etc/keepalived/conf.d/loop.conf": "include loop.conf\n",
		}
		for _, opt := range []ConvertOptions{{}, {Backend: "etcd", Endpoints: []string{"http://e:2379"}}} {
			out, ds, err := Import(confPath, Options{ParseOptions: ParseOptions{FS: fs, ConfigID: "lb1"}, ConvertOptions: opt})
			for _, d := range ds {
				if d.Pos.File == "" || d.Pos.Line <= 0 {
					t.Errorf("diagnostic without a file and line: %q", d)
				}
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Pos.File == "" {
					t.Errorf("error without a file: %v", err)
				}
				continue
			}
			var v any
			if err := yaml.Unmarshal(out, &v); err != nil {
				t.Errorf("output is not YAML: %v\n%s", err, out)
			}
		}
	})
}
