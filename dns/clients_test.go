package dns

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Real resolver clients against the door: dig (bind9-dnsutils) and kdig
// (knot-dnsutils), over UDP and TCP.

// digResult is what a client printed: the status, the header's flags and
// counts, the transport the answer came over and the answer's addresses.
type digResult struct {
	status    string
	flags     string
	answers   int
	transport string
	addrs     []string
	opt       bool // an OPT pseudo-section came back
	out       string
}

var (
	digStatusRE = regexp.MustCompile(`status: ([A-Z]+)`)
	// dig: ";; flags: qr rd ra; QUERY: 1, ANSWER: 1, ..."; kdig: ";; Flags: qr rd ra; QUERY: 1; ANSWER: 1; ..."
	digFlagsRE   = regexp.MustCompile(`(?i);; flags: ([a-z ]*); QUERY: \d+[,;] ANSWER: (\d+)`)
	digAddrRE    = regexp.MustCompile(`(?m)^\S+\s+\d+\s+IN\s+(?:A|AAAA)\s+(\S+)$`)
	digFromRE    = regexp.MustCompile(`\((UDP|TCP)\)`)
	digOptRE     = regexp.MustCompile(`(?i)OPT PSEUDOSECTION|;; EDNS PSEUDOSECTION`)
	digTruncated = regexp.MustCompile(`(?i)truncated`)
)

func parseDig(t *testing.T, out string) digResult {
	t.Helper()
	r := digResult{out: out}
	if m := digStatusRE.FindStringSubmatch(out); m != nil {
		r.status = m[1]
	}
	if m := digFlagsRE.FindStringSubmatch(out); m != nil {
		r.flags = m[1]
		r.answers, _ = strconv.Atoi(m[2])
	} else {
		t.Fatalf("no header flags in:\n%s", out)
	}
	froms := digFromRE.FindAllStringSubmatch(out, -1)
	if len(froms) > 0 {
		r.transport = froms[len(froms)-1][1]
	}
	for _, m := range digAddrRE.FindAllStringSubmatch(out, -1) {
		r.addrs = append(r.addrs, m[1])
	}
	r.opt = digOptRE.MatchString(out)
	return r
}

func (r digResult) hasFlag(f string) bool {
	return strings.Contains(" "+r.flags+" ", " "+f+" ")
}

// query runs client (dig or kdig) against the door with args.
func (d *door) query(t *testing.T, client string, args ...string) digResult {
	t.Helper()
	host, port := hostPort(t, d.addr)
	base := []string{"@" + host, "-p", port}
	if client == "dig" {
		base = append(base, "+tries=1", "+time=5")
	} else {
		base = append(base, "+retry=0", "+timeout=5")
	}
	return parseDig(t, run(t, client, append(base, args...)...))
}

func TestRealClients(t *testing.T) {
	d := newDoor(t, doorOpts{})
	for _, client := range []string{"dig", "kdig"} {
		for _, transport := range []string{"UDP", "TCP"} {
			t.Run(client+"/"+transport, func(t *testing.T) {
				var args []string
				if transport == "TCP" {
					args = append(args, "+tcp")
				}
				r := d.query(t, client, append(args, "www.example.com", "A")...)
				if r.status != "NOERROR" || r.transport != transport || fmt.Sprint(r.addrs) != "[93.184.216.34]" {
					t.Errorf("allowed name: status %s over %s, addresses %v\n%s", r.status, r.transport, r.addrs, r.out)
				}
				wantFields(t, d.lastLine("www.example.com", "A"), map[string]any{"decision": "allow", "proto": strings.ToLower(transport)})

				r = d.query(t, client, append(args, "example.org", "A")...)
				if r.status != "REFUSED" || r.answers != 0 {
					t.Errorf("denied name: status %s, %d answers", r.status, r.answers)
				}
				r = d.query(t, client, append(args, "www.example.com", "AAAA")...)
				if r.status != "NOERROR" || fmt.Sprint(r.addrs) != "[2606:2800:220:1::248:1893]" {
					t.Errorf("AAAA: %s %v", r.status, r.addrs)
				}
			})
		}
	}
}

// A UDP answer larger than the client can take goes out truncated with TC
// set; the client asks again over TCP and gets it whole.
func TestTruncationAndTCPFallback(t *testing.T) {
	d := newDoor(t, doorOpts{})
	for _, client := range []string{"dig", "kdig"} {
		t.Run(client, func(t *testing.T) {
			before := len(d.log.lines(t))
			r := d.query(t, client, "+noedns", "big.example.com", "A")
			if r.status != "NOERROR" || r.answers != 60 || r.transport != "TCP" || !digTruncated.MatchString(r.out) {
				t.Errorf("without EDNS0: status %s, %d answers over %s, want all 60 over TCP after a truncated UDP answer\n%s",
					r.status, r.answers, r.transport, r.out)
			}
			lines := d.log.lines(t)[before:]
			if len(lines) != 2 {
				t.Fatalf("%d decision lines, want the truncated UDP one and the TCP one: %v", len(lines), lines)
			}
			wantFields(t, lines[0], map[string]any{"proto": "udp", "truncated": true, "decision": "allow"})
			wantFields(t, lines[1], map[string]any{"proto": "tcp", "truncated": nil, "answers": 60})
			if n, _ := lines[0]["answers"].(float64); n == 0 || n >= 60 {
				t.Errorf("truncated answer had %v records", lines[0]["answers"])
			}

			r = d.query(t, client, "+noedns", "+ignore", "big.example.com", "A")
			if !r.hasFlag("tc") || r.answers >= 60 || r.transport != "UDP" {
				t.Errorf("truncated answer kept: flags %q, %d answers over %s", r.flags, r.answers, r.transport)
			}
		})
	}
}

// EDNS0: a client announcing a larger UDP size gets the whole answer over
// UDP, with the door's own OPT record; the upstream's truncated UDP answer
// is fetched again over TCP by the door.
func TestEDNS0(t *testing.T) {
	d := newDoor(t, doorOpts{})
	for _, client := range []string{"dig", "kdig"} {
		t.Run(client, func(t *testing.T) {
			r := d.query(t, client, "+bufsize=4096", "big.example.com", "A")
			if r.status != "NOERROR" || r.answers != 60 || r.transport != "UDP" || r.hasFlag("tc") || !r.opt {
				t.Errorf("EDNS0 4096: status %s, %d answers over %s, flags %q, OPT %v\n%s", r.status, r.answers, r.transport, r.flags, r.opt, r.out)
			}
			if !strings.Contains(r.out, "udp: 1232") && !strings.Contains(r.out, "UDP size: 1232") {
				t.Errorf("the door's OPT does not announce 1232:\n%s", r.out)
			}
			r = d.query(t, client, "+bufsize=4096", "huge.example.com", "A")
			if r.status != "NOERROR" || r.answers != 150 || r.transport != "UDP" {
				t.Errorf("answer larger than the upstream's UDP: status %s, %d answers over %s", r.status, r.answers, r.transport)
			}
		})
	}
	if n := d.up.count("huge.example.com. A tcp"); n == 0 {
		t.Error("the door never asked the upstream again over TCP after a truncated answer")
	}
}

// DNS tunnelling: data in TXT (or NULL) answers, or in long random labels
// under a domain the tunnel's server answers for. Every attempt is refused,
// logged, and never reaches the upstream.
func TestTunnellingRefused(t *testing.T) {
	d := newDoor(t, doorOpts{})
	const chunk = "nbswy3dpeb3w64tmmq3tsmzvgm2dgnbvgy3tqojq"
	for _, tc := range []struct {
		client, qtype, name, reason string
	}{
		{"dig", "TXT", chunk + ".t.tunnel.example.org", "qtype"},
		{"kdig", "TXT", chunk + ".t.tunnel.example.org", "qtype"},
		{"dig", "TXT", chunk + ".a.cdn.example.com", "qtype"}, // under an allowed wildcard: still no TXT
		{"dig", "NULL", chunk + ".a.cdn.example.com", "qtype"},
		{"kdig", "ANY", "www.example.com", "qtype"},
		{"dig", "A", chunk + ".t.tunnel.example.org", "no-rule"}, // data in the name, asked as A
	} {
		t.Run(tc.client+"/"+tc.qtype+"/"+tc.reason, func(t *testing.T) {
			r := d.query(t, tc.client, tc.name, tc.qtype)
			if r.status != "REFUSED" || r.answers != 0 {
				t.Errorf("status %s with %d answers, want REFUSED", r.status, r.answers)
			}
			wantFields(t, d.lastLine(tc.name, tc.qtype), map[string]any{"decision": "deny", "reason": tc.reason, "rcode": "REFUSED"})
		})
	}
	d.up.mu.Lock()
	defer d.up.mu.Unlock()
	for k := range d.up.seen {
		if strings.Contains(k, chunk) || strings.Contains(k, " TXT ") || strings.Contains(k, " ANY ") {
			t.Errorf("the upstream was asked %s", k)
		}
	}
}

// dig -b picks the source address: the identity follows it.
func TestRealClientIdentityBySource(t *testing.T) {
	d := newDoor(t, doorOpts{rules: labClient(t)})
	r := d.query(t, "dig", "-b", "127.0.0.2", "other.example.com", "A")
	if r.status != "NOERROR" || r.answers != 1 {
		t.Errorf("lab's name from 127.0.0.2: %s %d", r.status, r.answers)
	}
	wantFields(t, d.lastLine("other.example.com", "A"), map[string]any{"identity": "lab"})
	if r := d.query(t, "kdig", "-b", "127.0.0.2", "www.example.com", "A"); r.status != "REFUSED" {
		t.Errorf("default's name from 127.0.0.2: %s", r.status)
	}
	if r := d.query(t, "kdig", "www.example.com", "A"); r.status != "NOERROR" {
		t.Errorf("default's name from 127.0.0.1: %s", r.status)
	}
}
