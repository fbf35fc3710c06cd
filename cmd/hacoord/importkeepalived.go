package main

import (
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hacoord/hacoord/internal/keepalivedconf"
)

// newImportKeepalivedCommand is `hacoord import-keepalived FILE`: keepalived.conf in, hacoord.yaml
// out (internal/keepalivedconf does the work).
func newImportKeepalivedCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		backend   string
		endpoints []string
		configID  string
	)
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	cmd := &cobra.Command{
		Use:   "import-keepalived FILE",
		Short: "Translate a keepalived.conf into an equivalent hacoord configuration",
		Long: `import-keepalived reads a keepalived configuration (keepalived.conf(5), with its includes)
and prints an equivalent hacoord configuration on stdout. keepalived's defaults are written
out, so the result does not depend on hacoord's. On stderr it prints one line per keyword it
drops or whose meaning changes in hacoord, and each problem keepalived itself would report,
as FILE:LINE: keyword: what happened.

By default the result keeps the VRRP backend: a drop-in that forms one group with the
keepalived nodes it replaces (same virtual_router_id, priority, advert_int, VRRP version and
password, same VIPs in the same order). With --backend etcd or zk it elects through the store
instead: the same instances, each in a group named after it, the VRRP-only keywords dropped.

A file that cannot be read or parsed (an unclosed block, an include cycle), or an instance
hacoord cannot run (no virtual_router_id, no VIP, no interface), exits with status 2.`,
		Example: `  hacoord import-keepalived /etc/keepalived/keepalived.conf > /etc/hacoord/hacoord.yaml
  hacoord check-config --config /etc/hacoord/hacoord.yaml --name lb1

  # the same instances, elected through etcd
  hacoord import-keepalived --backend etcd --endpoints http://10.0.0.1:2379,http://10.0.0.2:2379 \
      /etc/keepalived/keepalived.conf`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return configErrorf("import-keepalived: %v (the keepalived.conf to read)", err)
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			out, diags, err := keepalivedconf.Import(args[0], keepalivedconf.Options{
				ParseOptions:   keepalivedconf.ParseOptions{ConfigID: configID},
				ConvertOptions: keepalivedconf.ConvertOptions{Backend: backend, Endpoints: endpoints},
			})
			if _, werr := io.WriteString(stderr, keepalivedconf.FormatDiagnostics(diags)); werr != nil {
				return werr
			}
			if err != nil {
				return configErrorf("import-keepalived: %v", err)
			}
			_, err = stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&backend, "backend", "vrrp", "backend of the result: vrrp (a drop-in next to keepalived), etcd or zk")
	cmd.Flags().StringSliceVar(&endpoints, "endpoints", nil, "etcd URLs or ZooKeeper host:port list, with --backend etcd|zk")
	cmd.Flags().StringVar(&configID, "config-id", host, "keepalived's --config-id: which '@ID' conditional lines apply (keepalived's default: the host name)")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return configError{err} })
	return cmd
}
