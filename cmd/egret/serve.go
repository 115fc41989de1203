package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/config"
	"github.com/egret-proxy/egret/internal/tlsfiles"
	"github.com/egret-proxy/egret/logsink"
	"github.com/egret-proxy/egret/proxy"
	"github.com/egret-proxy/egret/telemetry"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
)

// telemetryFlushTimeout bounds how long egret waits, after draining, for
// the spans still queued to reach the OTLP endpoint.
const telemetryFlushTimeout = 10 * time.Second

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run the proxy: explicit listener (--listen), transparent listener (--transparent), admin endpoints (--admin)",
		Args:  cobra.NoArgs,
		RunE:  runServe,
	}
	config.Flags(cmd.Flags())
	return cmd
}

func runServe(cmd *cobra.Command, _ []string) error {
	stderr := cmd.ErrOrStderr()
	cfg, err := config.Load(cmd.Flags())
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("config: %w", err)}
	}
	ln, err := proxy.Listen("tcp", cfg.Listen)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("listen %s: %w", cfg.Listen, err)}
	}
	lns := []net.Listener{ln}
	var door *dnsDoor
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
		door.close()
	}
	var tlsLn net.Listener
	if cfg.ListenTLS != "" {
		if tlsLn, err = proxy.Listen("tcp", cfg.ListenTLS); err != nil {
			closeAll()
			return &exitError{code: 2, err: fmt.Errorf("listen-tls %s: %w", cfg.ListenTLS, err)}
		}
		lns = append(lns, tlsLn)
	}
	var transparent []net.Listener
	if cfg.Transparent != "" {
		if transparent, err = proxy.ListenTransparent(cfg.Transparent, cfg.TransparentTProxy); err != nil {
			closeAll()
			return &exitError{code: 2, err: fmt.Errorf("transparent listen %s: %w", cfg.Transparent, err)}
		}
		lns = append(lns, transparent...)
	}
	if door, err = listenDNS(cfg); err != nil {
		closeAll()
		return &exitError{code: 2, err: err}
	}
	if door != nil {
		lns = append(lns, door.ln) // its own address: never dialled, never an upstream
	}
	var adminLn net.Listener
	if cfg.Admin != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin); err != nil {
			closeAll()
			return &exitError{code: 2, err: fmt.Errorf("admin listen %s: %w", cfg.Admin, err)}
		}
		lns = append(lns, adminLn)
	}
	self := ownAddresses(lns...)
	rules, err := buildRules(cfg, self, stderr)
	if err != nil {
		closeAll()
		return &exitError{code: 2, err: err}
	}
	dlog, err := openDecisionLog(cfg)
	if err != nil {
		closeAll()
		return &exitError{code: 2, err: err}
	}
	defer dlog.Close()
	tel, err := startTelemetry(stderr)
	if err != nil {
		closeAll()
		return &exitError{code: 2, err: err}
	}
	// Signals are handled before /readyz can answer: a SIGHUP sent to a
	// ready egret reloads, it never kills it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(term)
	// SIGUSR1 rotates the decision log file (logrotate's postrotate, or
	// cron, sends it); the old file stays beside the new one.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for range usr1 {
			if err := dlog.Rotate(); err != nil {
				fmt.Fprintf(stderr, "egret: rotating the decision log: %v\n", err)
			} else if cfg.DecisionLogIsFile() {
				fmt.Fprintf(stderr, "egret: SIGUSR1: decision log rotated; writing a new %s\n", cfg.DecisionLog)
			}
		}
	}()

	srv := proxy.NewServer(dlog, rules, append(door.serverOptions(), proxy.WithTelemetry(tel))...)
	admin := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
	if adminLn != nil {
		go admin.Serve(adminLn)
	}
	served := make(chan error, 4+len(transparent))
	if door != nil {
		if err := door.start(cfg, srv, served, stderr); err != nil {
			closeAll()
			stopTelemetry(tel, stderr)
			return &exitError{code: 2, err: err}
		}
	}
	// Behind a load balancer the listeners read the PROXY header first
	// (set at start: a reload does not change who sends one).
	viaLB := func(l net.Listener) net.Listener {
		if len(cfg.ProxyProtocolFrom) == 0 {
			return l
		}
		return proxy.AcceptProxyProtocol(l, cfg.ProxyProtocolFrom, cfg.ReadHeaderTimeout)
	}
	if tlsLn != nil {
		front, err := httpsFrontDoor(cfg, stderr)
		if err != nil {
			closeAll()
			stopTelemetry(tel, stderr)
			return &exitError{code: 2, err: err}
		}
		go func() { served <- srv.ServeExplicitTLS(viaLB(tlsLn), front.Config()) }()
	}
	go func() { served <- srv.ServeExplicit(viaLB(ln)) }()
	serveTransparent := srv.ServeTransparent
	if cfg.TransparentTProxy {
		serveTransparent = srv.ServeTProxy
	}
	for _, l := range transparent {
		go func() { served <- serveTransparent(viaLB(l)) }()
	}
	fmt.Fprintf(stderr, "egret: explicit proxy on %s, products %v, mode %s; admin on %s\n",
		ln.Addr(), cfg.Products, cfg.Mode, cfg.Admin)
	if tlsLn != nil {
		certs := "no client certificates"
		switch {
		case cfg.RequireClientCert:
			certs = "client certificate from " + cfg.ClientCA + " required"
		case cfg.ClientCA != "":
			certs = "client certificates from " + cfg.ClientCA + " name identities"
		}
		fmt.Fprintf(stderr, "egret: HTTPS proxy on %s, certificate %s (%s)\n", tlsLn.Addr(), cfg.TLSCert, certs)
	}
	delivery := "REDIRECT"
	if cfg.TransparentTProxy {
		delivery = "TPROXY"
	}
	for _, l := range transparent {
		fmt.Fprintf(stderr, "egret: transparent listener on %s (%s)\n", l.Addr(), delivery)
	}
	if len(cfg.ProxyProtocolFrom) > 0 {
		fmt.Fprintf(stderr, "egret: PROXY protocol required from %v, refused from anywhere else\n", cfg.ProxyProtocolFrom)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	reload := func() { tel.CountReload(reloadRules(cmd, srv, door, &cfg, self, stderr)) }
	if cfg.File != "" {
		go func() {
			if err := config.Watch(ctx, cfg.File, hup, reload); err != nil && ctx.Err() == nil {
				fmt.Fprintf(stderr, "egret: watching %s: %v (SIGHUP still reloads)\n", cfg.File, err)
			}
		}()
	} else {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					reload()
				}
			}
		}()
	}

	select {
	case err := <-served:
		stopTelemetry(tel, stderr)
		return &exitError{code: 1, err: fmt.Errorf("serving: %w", err)}
	case sig := <-term:
		fmt.Fprintf(stderr, "egret: %s: draining for up to %s\n", sig, cfg.ShutdownGrace)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if door != nil && door.door != nil {
		door.door.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(stderr, "egret: grace period over; closed the remaining connections\n")
	}
	admin.Close()
	stopTelemetry(tel, stderr)
	fmt.Fprintln(stderr, "egret: stopped")
	return nil
}

// decisionLogTimeout bounds one delivery of a decision line to a syslog
// server (dial or write); past it the request is refused with 503.
const decisionLogTimeout = 5 * time.Second

// openDecisionLog opens the decision log's sink: standard output, a file,
// a syslog server (syslog://, syslog+udp://) or the OTLP collector
// (otlp).
func openDecisionLog(cfg *config.Config) (*proxy.DecisionLog, error) {
	switch {
	case logsink.IsSyslog(cfg.DecisionLog):
		s, err := logsink.DialSyslog(cfg.DecisionLog, decisionLogTimeout)
		if err != nil {
			return nil, err
		}
		return proxy.NewDecisionLog(s, s), nil
	case cfg.DecisionLog == "otlp":
		s, err := telemetry.NewLogSink(context.Background(), version)
		if err != nil {
			return nil, err
		}
		return proxy.NewDecisionLog(s, s), nil
	}
	return proxy.OpenDecisionLog(cfg.DecisionLog, cfg.DecisionLogMaxSize, cfg.DecisionLogKeep)
}

// httpsFrontDoor reads the HTTPS proxy listener's certificate, key and
// client CAs, and reads them again when they change (a renewed
// certificate is used from the next handshake; open connections keep
// theirs).
func httpsFrontDoor(cfg *config.Config, stderr io.Writer) (*tlsfiles.Server, error) {
	front, err := tlsfiles.New(tlsfiles.Options{
		CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey,
		ClientCAFile: cfg.ClientCA, RequireClientCert: cfg.RequireClientCert,
		OnReload: func(err error) {
			if err != nil {
				fmt.Fprintf(stderr, "egret: HTTPS proxy certificate changed but not loaded, keeping the old one: %v\n", err)
				return
			}
			fmt.Fprintf(stderr, "egret: HTTPS proxy certificate reloaded from %s\n", cfg.TLSCert)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("listen-tls: %w", err)
	}
	return front, nil
}

// startTelemetry sets up tracing and metrics from the OTEL_* environment;
// exporter errors (an unreachable collector) are reported on stderr.
func startTelemetry(stderr io.Writer) (*telemetry.Telemetry, error) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		fmt.Fprintf(stderr, "egret: telemetry: %v\n", err)
	}))
	tel, err := telemetry.New(context.Background(), version)
	if err != nil {
		return nil, err
	}
	if p := tel.Exporting(); p != "" {
		fmt.Fprintf(stderr, "egret: exporting spans with OTLP %s\n", p)
	}
	return tel, nil
}

// stopTelemetry flushes the spans still queued, within telemetryFlushTimeout.
func stopTelemetry(tel *telemetry.Telemetry, stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), telemetryFlushTimeout)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		fmt.Fprintf(stderr, "egret: %v\n", err)
	}
}

// reloadRules loads the configuration afresh and swaps in the new rules.
// A configuration that fails validation keeps the old policy; the error
// says why.
func reloadRules(cmd *cobra.Command, srv *proxy.Server, door *dnsDoor, cur **config.Config, self []netip.AddrPort, stderr io.Writer) error {
	cfg, err := config.Load(cmd.Flags())
	if err == nil {
		var rules *proxy.Rules
		if rules, err = buildRules(cfg, self, stderr); err == nil {
			if err = door.reload(cfg, rules, stderr); err == nil {
				srv.SetRules(rules)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "egret: reload failed, keeping the previous policy: %v\n", err)
		return err
	}
	for _, key := range config.RestartNeeded(*cur, cfg) {
		fmt.Fprintf(stderr, "egret: reload: %s changed; it takes effect after a restart\n", key)
	}
	*cur = cfg
	fmt.Fprintln(stderr, "egret: reloaded configuration")
	return nil
}

// buildRules compiles the allowlists and identities of a configuration.
func buildRules(cfg *config.Config, self []netip.AddrPort, stderr io.Writer) (*proxy.Rules, error) {
	cat, err := allowlists.LoadCatalog(cfg.Allowlists...)
	if err != nil {
		return nil, err
	}
	pol, warnings, err := allowlists.Compile(cat, allowlists.Settings{Vars: cfg.Vars, Deny: cfg.Deny})
	for _, w := range warnings {
		fmt.Fprintln(stderr, "egret: warning:", w)
	}
	if err != nil {
		return nil, err
	}
	mode, err := proxy.ParseMode(cfg.Mode)
	if err != nil {
		return nil, err
	}
	intercept, err := buildIntercept(cfg)
	if err != nil {
		return nil, err
	}
	ech, err := proxy.ParseECHMode(cfg.ECH)
	if err != nil {
		return nil, err
	}
	def, err := pol.Identity("default", cfg.Products...)
	if err != nil {
		return nil, fmt.Errorf("product: %w", err)
	}
	r := &proxy.Rules{
		Policy:       pol,
		Default:      proxy.Client{Name: "default", Identity: def, Mode: mode},
		AuthOptional: cfg.AuthOptional,
		Guard:        proxy.Guard{AllowRanges: cfg.AllowRanges, Self: self, Local: localAddresses()},
		Pins:         cfg.Resolve,
		Upstream:     cfg.UpstreamProxy,
		Intercept:    intercept,
		// Both take effect on the transparent listener; a dns match needs
		// the DNS door too (proxy.WithDNSAnswers).
		RequireDNSMatch: cfg.RequireDNSMatch,
		ECH:             ech,
		Limits: proxy.Limits{
			ReadHeaderTimeout: cfg.ReadHeaderTimeout, DialTimeout: cfg.DialTimeout, IdleTimeout: cfg.IdleTimeout,
			MaxHeaderBytes: cfg.MaxHeaderBytes, MaxConns: cfg.MaxConns,
		},
	}
	for _, c := range cfg.Clients {
		id, err := pol.Identity(c.Name, c.Products...)
		if err != nil {
			return nil, fmt.Errorf("client %s: %w", c.Name, err)
		}
		cm := mode
		if c.Mode != "" {
			if cm, err = proxy.ParseMode(c.Mode); err != nil {
				return nil, fmt.Errorf("client %s: %w", c.Name, err)
			}
		}
		r.Clients = append(r.Clients, proxy.Client{
			Name: c.Name, Sources: c.Sources, Username: c.Username,
			CheckPassword: rememberSuccess(c.CheckPassword), Identity: id, Mode: cm, Listener: c.Listener,
			CertSubject: c.CertSubject, CertSANs: c.CertSAN,
		})
	}
	return r, nil
}

// ownAddresses are the addresses egret listens on: it must never dial them.
func ownAddresses(lns ...net.Listener) []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range lns {
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
	return out
}

// localAddresses are the host's interface addresses, which a listener on
// an unspecified address also answers on.
func localAddresses() []netip.Addr {
	var out []netip.Addr
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// rememberSuccess wraps a password check so that the last password that
// passed is recognised again by its SHA-256, compared in constant time,
// without running the check: a bcrypt compare takes tens of milliseconds
// and clients send their credentials with every request.
func rememberSuccess(check func(string) bool) func(string) bool {
	var last atomic.Pointer[[32]byte]
	return func(pw string) bool {
		sum := sha256.Sum256([]byte(pw))
		if known := last.Load(); known != nil && subtle.ConstantTimeCompare(known[:], sum[:]) == 1 {
			return true
		}
		if !check(pw) {
			return false
		}
		last.Store(&sum)
		return true
	}
}
