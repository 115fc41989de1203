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
	var fdLimit uint64
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "serve the bare splice relay (accept, CONNECT, dial, splice; nothing else) until killed",
		Long: `relay is the user-space limit a CONNECT proxy is measured against: it
accepts, reads the CONNECT, dials --dial-host on the CONNECT's port, answers 200
and copies both ways with io.Copy (splice(2)). No policy, no log, no limits.
It prints "listening on ADDR" on standard output once it accepts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := setRelayFDLimit(fdLimit); err != nil {
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
	cmd.Flags().Uint64Var(&fdLimit, "fd-limit", 0, "descriptor limit to run under, as the proxies it is compared with (0: raise to the hard limit)")
	cmd.Flags().StringVar(&dialHost, "dial-host", "127.0.0.1", "address dialled for every CONNECT, on the CONNECT's port")
	return cmd
}

func setRelayFDLimit(n uint64) error {
	if n == 0 {
		_, err := bench.RaiseFDLimit()
		return err
	}
	if err := bench.SetFDLimit(n); err != nil {
		return fmt.Errorf("--fd-limit %d: %w", n, err)
	}
	return nil
}
