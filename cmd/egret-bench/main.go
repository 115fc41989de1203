// Command egret-bench measures an HTTP proxy — egret, or any other — and a
// direct connection as the physical limit: bulk tunnel throughput, tunnel
// and TLS setup rate and latency, plain HTTP forwarding, denied CONNECTs,
// and what idle tunnels cost the proxy. It starts its own upstreams on
// loopback (or in a network namespace it is told of) and bounds every run
// in time and count. See README.md, "Benchmarks against peers".
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "egret-bench",
		Short:         "Load tool: measure an HTTP proxy against a bare relay and a direct connection",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newRelayCmd(), newTableCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "egret-bench:", err)
		os.Exit(2)
	}
}

// writeOut writes b to path, or to standard output for "" or "-".
func writeOut(path string, b []byte, stdout io.Writer) error {
	if path == "" || path == "-" {
		_, err := stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
