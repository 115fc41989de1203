package main

import (
	"fmt"
	"net"
	"os"

	"github.com/egret-proxy/egret/internal/bench"
	"github.com/spf13/cobra"
)

func newRelayCmd() *cobra.Command {
	var listen, dialHost string
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "serve the bare splice relay (accept, CONNECT, dial, splice; nothing else) until killed",
		Long: `relay is the user-space limit a CONNECT proxy is measured against: it
accepts, reads the CONNECT, dials --dial-host on the CONNECT's port, answers 200
and copies both ways with io.Copy (splice(2)). No policy, no log, no limits.
It prints "listening on ADDR" on standard output once it accepts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := bench.RaiseFDLimit(); err != nil {
				return err
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stdout, "listening on %s\n", l.Addr())
			return bench.ServeRelay(l, dialHost)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address to accept on")
	cmd.Flags().StringVar(&dialHost, "dial-host", "127.0.0.1", "address dialled for every CONNECT, on the CONNECT's port")
	return cmd
}
