package lab

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// MetricsAddress is where every lab daemon serves /metrics and /healthz, inside its namespace.
const MetricsAddress = "127.0.0.1:9732"

// Get fetches path (/metrics, /healthz) from the node's daemon at MetricsAddress, from inside the
// node's namespace (the connection is opened on a thread switched into it), and returns the HTTP
// status and body.
func (n *Node) Get(path string) (code int, body string, err error) {
	code, body, err = n.NS.Get(MetricsAddress, path)
	if err != nil {
		err = fmt.Errorf("lab: %s: GET %s: %w", n.Name, path, err)
	}
	return code, body, err
}

// Metrics scrapes the node's /metrics into series (name and labels as the text format prints
// them, `hacoord_master{group="lab",instance="lab"}`) -> value.
func (n *Node) Metrics() (map[string]float64, error) {
	code, body, err := n.Get("/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("lab: %s: /metrics: HTTP %d: %s", n.Name, code, body)
	}
	return ParseMetrics(body), nil
}

// ParseMetrics reads the samples of a Prometheus text exposition (comments skipped).
func ParseMetrics(body string) map[string]float64 {
	out := map[string]float64{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}
