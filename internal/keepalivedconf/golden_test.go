package keepalivedconf

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden converts realistic files and compares the YAML and the diagnostics with the golden
// files next to them (go test -update rewrites them). full.conf is a director pair's lb1: two
// instances in a sync group, track scripts with weights, a virtual server with two real servers
// checked by HTTP_GET and TCP_CHECK; single.conf is one instance that today's single-instance
// settings express.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		conf, golden string
		opt          ConvertOptions
	}{
		{"testdata/full.conf", "testdata/full", ConvertOptions{}},
		{"testdata/full.conf", "testdata/full.etcd", ConvertOptions{Backend: "etcd", Endpoints: []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"}}},
		{"testdata/single.conf", "testdata/single", ConvertOptions{}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, ds, err := Import(tc.conf, Options{ConvertOptions: tc.opt})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden+".yaml", out)
			golden(t, tc.golden+".diags", []byte(FormatDiagnostics(ds)))
			validate(t, out)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// validate checks an imported configuration against the packages that will run it: each
// instance's VRRP settings with vrrp.Config.Validate, its VIPs and announce schedule with
// vip.Config.Validate, and its virtual_servers decoded (unknown keys refused) into ipvs.Config and
// validated. This keeps the output structs in step with those packages' schemas.
func validate(t *testing.T, out []byte) {
	t.Helper()
	var raw map[string]any
	if err := yaml.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	var insts []map[string]any
	if l, ok := raw["instances"].([]any); ok {
		for _, i := range l {
			insts = append(insts, i.(map[string]any))
		}
	} else {
		insts = append(insts, raw)
	}
	for _, inst := range insts {
		name := inst["group"]
		ifname, _ := inst["interface"].(string)
		var prefixes, onIface []netip.Prefix
		for _, v := range inst["vips"].([]any) {
			s, dev := "", ""
			switch v := v.(type) {
			case string:
				s = v
			case map[string]any:
				s, _ = v["address"].(string)
				dev, _ = v["dev"].(string)
			}
			p := netip.MustParsePrefix(s)
			prefixes = append(prefixes, p)
			if dev == "" {
				onIface = append(onIface, p)
			}
		}
		var settings struct {
			VRRP     *VRRP     `yaml:"vrrp"`
			Announce *Announce `yaml:"announce"`
			VIPLabel string    `yaml:"vip_label"`
		}
		b, _ := yaml.Marshal(inst)
		if err := yaml.Unmarshal(b, &settings); err != nil {
			t.Fatal(err)
		}
		if v := settings.VRRP; v != nil {
			c := vrrp.DefaultConfig()
			c.Interface, c.VRID, c.Priority, c.AdvertInt = ifname, v.VRID, v.Priority, v.AdvertInt
			c.Preempt, c.PreemptDelay, c.Version, c.AuthPass, c.VIPs = !v.NoPreempt, v.PreemptDelay, v.Version, v.AuthPass, prefixes
			for _, p := range v.UnicastPeers {
				c.UnicastPeers = append(c.UnicastPeers, netip.MustParseAddr(p))
			}
			if err := c.Validate(); err != nil {
				t.Errorf("instance %v: %v", name, err)
			}
		}
		vc := vip.DefaultConfig()
		vc.Interface, vc.VIPs, vc.Label = ifname, onIface, settings.VIPLabel
		a := settings.Announce
		vc.Announce = vip.AnnounceConfig{Count: a.Count, Repeat: a.Repeat, RepeatInterval: a.Interval, Refresh: a.Refresh}
		if err := vc.Validate(); err != nil {
			t.Errorf("instance %v: %v", name, err)
		}
		vs, _ := yaml.Marshal(map[string]any{"virtual_servers": inst["virtual_servers"], "program_on_backup": true})
		var ic ipvs.Config
		dec := yaml.NewDecoder(bytes.NewReader(vs))
		dec.KnownFields(true)
		if err := dec.Decode(&ic); err != nil {
			t.Errorf("instance %v: virtual_servers do not decode as ipvs.Config: %v", name, err)
		} else if err := ic.Validate(); err != nil {
			t.Errorf("instance %v: %v", name, err)
		}
	}
	if strings.Contains(string(out), "<nil>") {
		t.Error("output contains <nil>")
	}
}
