package bench

import (
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Scenarios, in the order a run takes them.
// idle comes first, so that the proxy's descriptors and memory are read
// against a fresh process (a pool of splice pipes left by an earlier
// scenario would hide what a tunnel holds).
var Scenarios = []string{"idle", "bulk1", "bulk8", "connect", "tls1", "tls64", "http", "deny"}

// Config is one run: which scenarios, against what, for how long.
type Config struct {
	Target      string // the name in the table: direct, relay, egret-explicit, squid, …
	Client      *Client
	ProxyPID    int           // the proxy process to sample; 0 for none (direct)
	Bare        bool          // the proxy is the bare relay: it forwards no plain HTTP and has no policy
	Duration    time.Duration // each timed scenario
	MaxOps      int           // each rate scenario stops at this many operations
	Concurrency int           // workers of connect, http and deny
	IdleTunnels int           // tunnels the idle scenario opens
	Scenarios   []string
	Log         io.Writer // progress, one line per scenario
}

// Result is one scenario's measurement. Rates and CPU are per successful
// operation; latencies are of successful operations.
type Result struct {
	Target      string  `json:"target"`
	Scenario    string  `json:"scenario"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	OpsPerSec   float64 `json:"ops_per_sec,omitempty"`
	Gbps        float64 `json:"gbit_per_sec,omitempty"`
	P50Ms       float64 `json:"p50_ms,omitempty"`
	P99Ms       float64 `json:"p99_ms,omitempty"`
	P999Ms      float64 `json:"p999_ms,omitempty"`
	// The proxy's CPU time over the scenario (user + system, all threads).
	ProxyCPUSeconds float64 `json:"proxy_cpu_seconds,omitempty"`
	ProxyCPUPerOpUs float64 `json:"proxy_cpu_us_per_op,omitempty"`
	ProxyCPUPerGB   float64 `json:"proxy_cpu_seconds_per_gb,omitempty"`
	ProxyCPUUtil    float64 `json:"proxy_cpu_util,omitempty"` // CPU seconds per wall second
	ToolCPUUtil     float64 `json:"tool_cpu_util,omitempty"`
	// Idle tunnels: how many opened, and what each costs the proxy.
	Tunnels           int     `json:"tunnels,omitempty"`
	Opened            int     `json:"opened,omitempty"`
	ProxyFDsPerTunnel float64 `json:"proxy_fds_per_tunnel,omitempty"`
	ProxyKiBPerTunnel float64 `json:"proxy_rss_kib_per_tunnel,omitempty"`
	ProxyFDsBefore    int     `json:"proxy_fds_before,omitempty"`
	ProxyFDsAfter     int     `json:"proxy_fds_after,omitempty"`
	Skipped           string  `json:"skipped,omitempty"`
}

// Run runs the configured scenarios one after another.
func Run(cfg Config) ([]Result, error) {
	if err := cfg.Client.prepare(); err != nil {
		return nil, err
	}
	var out []Result
	for _, name := range cfg.Scenarios {
		r, err := runScenario(cfg, name)
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		r.Target, r.Scenario = cfg.Target, name
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "%-16s %-8s %s\n", cfg.Target, name, r.summary())
		}
		out = append(out, r)
	}
	return out, nil
}

func runScenario(cfg Config, name string) (Result, error) {
	c := cfg.Client
	switch name {
	case "bulk1":
		return runBulk(cfg, 1)
	case "bulk8":
		return runBulk(cfg, 8)
	case "connect":
		return runRate(cfg, cfg.Concurrency, func() worker { return opFunc(c.opConnect) })
	case "tls1":
		return runRate(cfg, 1, func() worker { return opFunc(c.opTLS) })
	case "tls64":
		return runRate(cfg, 64, func() worker { return opFunc(c.opTLS) })
	case "http":
		if cfg.Bare {
			return Result{Skipped: "the bare relay forwards no plain HTTP"}, nil
		}
		return runRate(cfg, cfg.Concurrency, func() worker { return c.newHTTPSession() })
	case "deny":
		if c.Kind == KindDirect || cfg.Bare {
			return Result{Skipped: "no policy"}, nil
		}
		return runRate(cfg, cfg.Concurrency, func() worker { return opFunc(c.opDeny) })
	case "idle":
		return runIdle(cfg)
	}
	return Result{}, fmt.Errorf("unknown scenario (want one of %v)", Scenarios)
}

// meter samples the proxy and this process around a measurement.
type meter struct {
	pid         int
	start       time.Time
	proxy, self ProcSample
}

func startMeter(pid int) (*meter, error) {
	m := &meter{pid: pid}
	var err error
	if pid != 0 {
		if m.proxy, err = SampleProc(pid); err != nil {
			return nil, fmt.Errorf("proxy process: %w", err)
		}
	}
	m.self, _ = SampleProc(os.Getpid())
	m.start = time.Now()
	return m, nil
}

// stop fills the wall time and CPU figures of r.
func (m *meter) stop(r *Result) error {
	r.Seconds = time.Since(m.start).Seconds()
	self, _ := SampleProc(os.Getpid())
	r.ToolCPUUtil = round((self.CPUSeconds - m.self.CPUSeconds) / r.Seconds)
	if m.pid == 0 {
		return nil
	}
	p, err := SampleProc(m.pid)
	if err != nil {
		return fmt.Errorf("proxy process: %w", err)
	}
	r.ProxyCPUSeconds = round(p.CPUSeconds - m.proxy.CPUSeconds)
	r.ProxyCPUUtil = round(r.ProxyCPUSeconds / r.Seconds)
	if r.Ops > 0 {
		r.ProxyCPUPerOpUs = round(r.ProxyCPUSeconds / float64(r.Ops) * 1e6)
	}
	return nil
}

// worker does one operation per call of do; it may keep state between
// them (a keep-alive connection), which close releases.
type worker interface {
	do() error
	close()
}

// opFunc is a worker without state.
type opFunc func() error

func (f opFunc) do() error { return f() }
func (opFunc) close()      {}

// runRate runs conc workers, each doing one operation after another,
// until the duration is over or MaxOps operations were started.
func runRate(cfg Config, conc int, newWorker func() worker) (Result, error) {
	var started, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	lat := make([][]time.Duration, conc)
	m, err := startMeter(cfg.ProxyPID)
	if err != nil {
		return Result{}, err
	}
	deadline := m.start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk := newWorker()
			defer wk.close()
			for time.Now().Before(deadline) && started.Add(1) <= int64(cfg.MaxOps) {
				t0 := time.Now()
				if err := wk.do(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	all := slices.Concat(lat...)
	r := Result{Concurrency: conc, Ops: int64(len(all)), Errors: failed.Load()}
	if err := m.stop(&r); err != nil {
		return r, err
	}
	if p := firstErr.Load(); p != nil {
		r.FirstError = (*p).Error()
	}
	r.OpsPerSec = round(float64(r.Ops) / r.Seconds)
	slices.Sort(all)
	r.P50Ms, r.P99Ms, r.P999Ms = quantileMs(all, 0.50), quantileMs(all, 0.99), quantileMs(all, 0.999)
	return r, nil
}

// quantileMs is the q-quantile of sorted durations (nearest rank), in ms.
func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return round(float64(sorted[i]) / 1e6)
}

// runBulk opens n tunnels to the stream upstream and reads from all of
// them for the duration.
func runBulk(cfg Config, n int) (Result, error) {
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := cfg.Client.openStream()
		if err != nil {
			return Result{Concurrency: n, Errors: 1, FirstError: err.Error()}, nil
		}
		conns = append(conns, c)
	}
	m, err := startMeter(cfg.ProxyPID)
	if err != nil {
		return Result{}, err
	}
	deadline := m.start.Add(cfg.Duration)
	var total, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(deadline)
			buf := make([]byte, 256<<10)
			for {
				k, err := c.Read(buf)
				total.Add(int64(k))
				if err != nil {
					if !isTimeout(err) {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	r := Result{Concurrency: n, Ops: int64(n) - failed.Load(), Errors: failed.Load()}
	if err := m.stop(&r); err != nil {
		return r, err
	}
	if p := firstErr.Load(); p != nil {
		r.FirstError = (*p).Error()
	}
	bytes := float64(total.Load())
	r.Gbps = round(bytes * 8 / r.Seconds / 1e9)
	r.ProxyCPUPerOpUs = 0 // an op here is a whole tunnel: per GB says more
	if bytes > 0 && cfg.ProxyPID != 0 {
		r.ProxyCPUPerGB = round(r.ProxyCPUSeconds / (bytes / 1e9))
	}
	return r, nil
}

// maxIdleFailures ends the idle scenario's opening: a proxy that failed
// this many tunnels will not open the rest.
const maxIdleFailures = 64

// runIdle opens IdleTunnels tunnels (Concurrency at a time), lets them sit,
// and reads what they cost the proxy in descriptors and memory. It stops
// opening after maxIdleFailures failures; Opened says how far it got.
func runIdle(cfg Config) (Result, error) {
	r := Result{Tunnels: cfg.IdleTunnels, Concurrency: cfg.Concurrency}
	var before ProcSample
	var err error
	if cfg.ProxyPID != 0 {
		if before, err = SampleProc(cfg.ProxyPID); err != nil {
			return r, err
		}
	}
	m, err := startMeter(cfg.ProxyPID)
	if err != nil {
		return r, err
	}
	conns := make([]net.Conn, cfg.IdleTunnels)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var next, opened, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range max(1, cfg.Concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(conns)); i = next.Add(1) - 1 {
				if failed.Load() >= int64(maxIdleFailures) {
					return // the proxy is full (out of descriptors, or at its cap)
				}
				c, err := cfg.Client.openHeld()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				conns[i] = c
				opened.Add(1)
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Second) // let the proxy settle (goroutines parked, buffers returned)
	r.Opened, r.Errors, r.Ops = int(opened.Load()), failed.Load(), opened.Load()
	if p := firstErr.Load(); p != nil {
		r.FirstError = (*p).Error()
	}
	if err := m.stop(&r); err != nil {
		return r, err
	}
	if cfg.ProxyPID == 0 || r.Opened == 0 {
		return r, nil
	}
	after, err := SampleProc(cfg.ProxyPID)
	if err != nil {
		return r, err
	}
	r.ProxyFDsBefore, r.ProxyFDsAfter = before.FDs, after.FDs
	r.ProxyFDsPerTunnel = round(float64(after.FDs-before.FDs) / float64(r.Opened))
	r.ProxyKiBPerTunnel = round(float64(after.RSSKiB-before.RSSKiB) / float64(r.Opened))
	return r, nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// round keeps three significant decimals' worth of a figure for the JSON.
func round(f float64) float64 {
	switch {
	case f >= 100:
		return float64(int64(f*10+0.5)) / 10
	case f >= 1:
		return float64(int64(f*1000+0.5)) / 1000
	}
	return float64(int64(f*1e6+0.5)) / 1e6
}

func (r Result) summary() string {
	switch {
	case r.Skipped != "":
		return "skipped: " + r.Skipped
	case r.Tunnels > 0:
		return fmt.Sprintf("opened %d/%d, %.2f fds and %.1f KiB per tunnel, errors %d %s",
			r.Opened, r.Tunnels, r.ProxyFDsPerTunnel, r.ProxyKiBPerTunnel, r.Errors, r.FirstError)
	case r.Gbps > 0 || r.Scenario == "bulk1" || r.Scenario == "bulk8":
		return fmt.Sprintf("%.2f Gbit/s, proxy %.2f CPU-s/GB, errors %d %s", r.Gbps, r.ProxyCPUPerGB, r.Errors, r.FirstError)
	}
	return fmt.Sprintf("%.0f ops/s p50 %.3f p99 %.3f p999 %.3f ms, proxy %.1f µs/op, ops %d errors %d %s",
		r.OpsPerSec, r.P50Ms, r.P99Ms, r.P999Ms, r.ProxyCPUPerOpUs, r.Ops, r.Errors, r.FirstError)
}
