package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/egret-proxy/egret/internal/bench"
	"github.com/egret-proxy/egret/internal/tlsfiles"
	"github.com/spf13/cobra"
)

type runOpts struct {
	proxy        string
	proxyCA      string
	target       string
	pid          int
	scenarios    []string
	duration     time.Duration
	maxOps       int
	concurrency  int
	idleTunnels  int
	host         string
	denyHost     string
	upstreamHost string
	portBase     int
	upstreamNS   string
	dialAddr     string
	relayCPU     int
	relayFDs     uint64
	out          string
}

func newRunCmd() *cobra.Command {
	var o runOpts
	cmd := &cobra.Command{
		Use:   "run",
		Short: "run scenarios against a proxy, the built-in relay, or directly; write a JSON report",
		Long: `run starts the upstreams and runs the scenarios one after another against
--proxy, which is one of:

  http://HOST:PORT  an explicit HTTP proxy (CONNECT for tunnels, absolute-form for plain HTTP)
  https://HOST:PORT the same over TLS to the proxy (--proxy-ca), one full handshake per connection
  direct            no proxy: the physical limit
  relay             the built-in bare splice relay, started as a child process (the user-space limit)
  transparent       dial --dial-addr as if direct; a redirect (iptables/nftables) sends it to the proxy

Scenarios: bulk1 bulk8 (throughput of 1 and 8 tunnels), connect (short tunnels, no TLS),
tls1 tls64 (CONNECT + TLS handshake + GET at concurrency 1 and 64), http (plain HTTP,
keep-alive), deny (CONNECT to --deny-host, which the proxy must refuse), idle (open
--idle-tunnels tunnels and read the proxy's descriptors and RSS per tunnel).

With --proxy-pid (set for relay), the proxy's CPU time (utime+stime from /proc/PID/stat),
RSS and descriptors are sampled around each scenario.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRun(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.proxy, "proxy", "direct", "http://HOST:PORT, https://HOST:PORT, direct, relay or transparent")
	f.StringVar(&o.proxyCA, "proxy-ca", "", "PEM file of the CA that signed an https:// proxy's certificate")
	f.StringVar(&o.target, "target", "", "name of this target in the report (default: from --proxy)")
	f.IntVar(&o.pid, "proxy-pid", 0, "PID of the proxy, for CPU, RSS and descriptors from /proc")
	f.StringSliceVar(&o.scenarios, "scenarios", bench.Scenarios, "scenarios to run, in this order")
	f.DurationVar(&o.duration, "duration", 3*time.Second, "length of each timed scenario")
	f.IntVar(&o.maxOps, "max-ops", 500000, "most operations of one rate scenario")
	f.IntVar(&o.concurrency, "concurrency", 64, "workers of the connect, http and deny scenarios (and idle's openers)")
	f.IntVar(&o.idleTunnels, "idle-tunnels", 1000, "tunnels the idle scenario opens")
	f.StringVar(&o.host, "host", "bench.example", "name asked for: CONNECT authority, SNI, Host (the proxy must allow it and resolve it to the upstreams)")
	f.StringVar(&o.denyHost, "deny-host", "denied.example", "name the proxy's policy denies")
	f.StringVar(&o.upstreamHost, "upstream-host", "127.0.0.1", "address the upstreams listen on")
	f.IntVar(&o.portBase, "upstream-port-base", 0, "first of five consecutive upstream ports (stream, reply, hold, tls, http); 0 picks free ports")
	f.StringVar(&o.upstreamNS, "upstream-netns", "", "network namespace (ip netns) to open the upstream listeners in")
	f.StringVar(&o.dialAddr, "dial-addr", "", "address dialled for direct and transparent (default --upstream-host)")
	f.IntVar(&o.relayCPU, "relay-cpu", -1, "CPU to pin the built-in relay to (-1: not pinned)")
	f.Uint64Var(&o.relayFDs, "relay-fd-limit", 20000, "descriptor limit of the built-in relay (0: the hard limit)")
	f.StringVarP(&o.out, "out", "o", "-", "file for the JSON report (- for standard output)")
	return cmd
}

func runRun(cmd *cobra.Command, o runOpts) error {
	for _, s := range o.scenarios {
		if !slices.Contains(bench.Scenarios, s) {
			return fmt.Errorf("--scenarios: unknown scenario %q (want some of %s)", s, strings.Join(bench.Scenarios, ", "))
		}
	}
	if o.duration <= 0 || o.duration > 5*time.Minute || o.maxOps <= 0 || o.concurrency <= 0 || o.idleTunnels < 0 {
		return errors.New("--duration must be in (0, 5m], --max-ops and --concurrency positive, --idle-tunnels not negative")
	}
	if _, err := bench.RaiseFDLimit(); err != nil {
		return fmt.Errorf("raise the descriptor limit: %w", err)
	}
	var ups *bench.Upstreams
	err := bench.InNetns(o.upstreamNS, func() (err error) {
		ups, err = bench.StartUpstreams(o.upstreamHost, o.portBase, o.host)
		return err
	})
	if err != nil {
		return err
	}
	defer ups.Close()
	client := &bench.Client{Host: o.host, DenyHost: o.denyHost, Ports: ups.Ports(), Roots: ups.RootCAs(),
		Addr: o.dialAddr}
	if client.Addr == "" {
		client.Addr = o.upstreamHost
	}
	target, pid := o.target, o.pid
	switch o.proxy {
	case bench.KindDirect, bench.KindTransparent:
		client.Kind = o.proxy
	case "relay":
		relay, err := startRelay(o.upstreamHost, o.relayCPU, o.relayFDs)
		if err != nil {
			return err
		}
		defer relay.stop()
		client.Kind, client.ProxyAddr, pid = bench.KindExplicit, relay.addr, relay.cmd.Process.Pid
	default:
		u, err := url.Parse(o.proxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" {
			return fmt.Errorf("--proxy %q: want http://HOST:PORT, https://HOST:PORT, direct, relay or transparent", o.proxy)
		}
		client.Kind, client.ProxyAddr = bench.KindExplicit, u.Host
		if u.Scheme == "https" {
			if client.ProxyTLS, err = proxyTLS(u.Hostname(), o.proxyCA); err != nil {
				return err
			}
		}
	}
	if target == "" {
		target = o.proxy
	}
	machine := bench.ThisMachine()
	results, err := bench.Run(bench.Config{
		Target: target, Client: client, ProxyPID: pid, Bare: o.proxy == "relay", Duration: o.duration, MaxOps: o.maxOps,
		Concurrency: o.concurrency, IdleTunnels: o.idleTunnels, Scenarios: o.scenarios, Log: cmd.ErrOrStderr(),
	})
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(bench.NewReport(target, results, machine), "", "  ")
	if err != nil {
		return err
	}
	return writeOut(o.out, append(b, '\n'), cmd.OutOrStdout())
}

// relayProcess is the built-in relay, run as a child so that its CPU time
// is its own.
type relayProcess struct {
	cmd  *exec.Cmd
	addr string
}

func startRelay(dialHost string, cpu int, fdLimit uint64) (*relayProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "relay", "--listen", "127.0.0.1:0", "--dial-host", dialHost,
		"--fd-limit", strconv.FormatUint(fdLimit, 10))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &relayProcess{cmd: cmd}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("relay: no address: %w", err)
	}
	r.addr = strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	if cpu >= 0 {
		if err := bench.PinToCPU(cmd.Process.Pid, cpu); err != nil {
			r.stop()
			return nil, fmt.Errorf("relay: pin to CPU %d: %w", cpu, err)
		}
	}
	return r, nil
}

func (r *relayProcess) stop() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// proxyTLS is the client config for an https:// proxy named host, trusting
// the CAs in caFile.
func proxyTLS(host, caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, fmt.Errorf("an https:// proxy needs --proxy-ca")
	}
	pool, err := tlsfiles.LoadCertPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("--proxy-ca: %w", err)
	}
	return &tls.Config{ServerName: host, RootCAs: pool}, nil
}
