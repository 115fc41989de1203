package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/egret-proxy/egret/internal/netnstest"
)

// A real browser behind the transparent listener. Chromium offers
// Encrypted Client Hello in every ClientHello, as GREASE, even with no ECH
// configuration: with ech: deny (the default) egret denies it, with
// ech: outer-sni it decides by the outer SNI, which is then the name the
// browser is going to. Chromium runs headless in the client namespace,
// resolves nothing (--host-resolver-rules maps example.com to the
// gateway's remote address and every other name to NOTFOUND), and its
// connection to 443 is redirected by a real nftables rule to egret, which
// dials the harness's TLS upstream.

func TestChromiumECH(t *testing.T) {
	netnstest.Require(t, "nft", netnstest.Chromium)
	h := newHarness(t, harnessOpts{})
	tb := netnstest.New(t)
	tb.Redirect("nftables", tproxyPort, h.tlsPort)
	serveTransparentIn(t, h, tb.Gateway)
	page := func(name string) string { return fmt.Sprintf("https://%s:%d/chromium", name, h.tlsPort) }
	const loaded = "tls upstream: GET /chromium"

	for _, tc := range []struct {
		ech    ECHMode
		name   string
		loads  bool
		reason string
	}{
		// One name after the other: a straggling line of the last case
		// never matches this one's host.
		{ECHOuterSNI, "example.com", true, "rule"},
		{ECHOuterSNI, "denied.example", false, "no-rule"},
		{ECHDeny, "example.com", false, "ech"},
		{ECHDeny, "denied.example", false, "ech"},
	} {
		t.Run(fmt.Sprintf("ech %s, %s", tc.ech, tc.name), func(t *testing.T) {
			// The last browser's connections are all decided and logged
			// before this one's lines are counted from here.
			waitFor(t, "the last browser's connections to end", func() bool { return h.srv.ActiveConns() == 0 })
			swapRules(h, func(r *Rules) { r.ECH = tc.ech })
			start := len(parseLines(t, h.logBuf.String()))
			load := func() string { return netnstest.ChromiumDOM(t, tb.Client, tc.name, page(tc.name)) }
			var dom string
			if tc.loads {
				dom = netnstest.ChromiumRetry(t, load)
			} else {
				dom = load()
			}
			if got := strings.Contains(dom, loaded); got != tc.loads {
				t.Errorf("page loaded: %v, want %v; DOM:\n%s", got, tc.loads, dom)
			}
			var lines []map[string]any
			waitFor(t, "the browser's decision line", func() bool {
				lines = linesWith(parseLines(t, h.logBuf.String())[start:], map[string]any{"msg": "decision", "host": tc.name})
				return len(lines) > 0
			})
			for _, l := range lines { // the browser may try more than once
				want := map[string]any{"decision": "deny", "reason": tc.reason, "method": "TLS", "sni": tc.name,
					"listener": "transparent", "client": l["client"]}
				if tc.loads {
					want["decision"] = "allow"
				}
				if tc.ech == ECHOuterSNI {
					want["ech"] = "outer-sni" // the hello offered ECH: Chromium's GREASE
				}
				wantFields(t, l, want)
				t.Logf("decision: %v", l)
				if !strings.HasPrefix(fmt.Sprint(l["client"]), tb.ClientAddr4+":") {
					t.Errorf("client %v: want the client namespace's %s", l["client"], tb.ClientAddr4)
				}
			}
		})
	}
}
