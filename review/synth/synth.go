// Package synth writes synthetic decision logs for benchmarks and tests of
// egret review: lines shaped like the proxy's (DESIGN §7), over a fixed
// set of destinations, so that a log of any length has the same distinct
// destinations and rules.
package synth

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// Products, allowed names and denied names of the generated log. The
// allowed names match rules of the embedded netapp-connector-aws product.
var (
	Products = []string{"netapp-connector-aws", "netapp-cvo-aws"}
	allowed  = []struct{ host, rule string }{
		{"api.services.cloud.netapp.com", "api.services.cloud.netapp.com"},
		{"cloudmanager.cloud.netapp.com", "cloudmanager.cloud.netapp.com"},
		{"netapp-cloud-account.auth0.com", "netapp-cloud-account.auth0.com"},
	}
)

// deniedHost returns the i-th of 200 denied names: 50 parents with four
// names each.
func deniedHost(i int) string {
	return fmt.Sprintf("n%d.svc%d.example.org", i%4, i/4)
}

// Write writes n lines starting at start, one every step, to w: 60 %
// allowed decisions with their close lines, 35 % denies (would-deny), 5 %
// auth denies. The same seed gives the same log.
func Write(w io.Writer, n int, start time.Time, step time.Duration, seed uint64) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t := start
	for i := 0; i < n; i++ {
		ts := t.UTC().Format(time.RFC3339Nano)
		trace := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
		client := fmt.Sprintf("10.0.1.%d:%d", 2+rng.IntN(200), 30000+rng.IntN(30000))
		product := Products[rng.IntN(len(Products))]
		switch r := rng.IntN(100); {
		case r < 30:
			a := allowed[rng.IntN(len(allowed))]
			fmt.Fprintf(bw, `{"time":%q,"msg":"decision","decision":"allow","mode":"report","listener":"explicit","client":%q,"identity":"default","products":[%q],"method":"CONNECT","host":%q,"port":443,"rule":%q,"source":"000_d49fc179dcbbed47.txt","reason":"rule","product":%q,"ip":"203.0.113.%d","trace_id":%q}`+"\n",
				ts, client, product, a.host, a.rule, product, rng.IntN(250), trace)
		case r < 60:
			a := allowed[rng.IntN(len(allowed))]
			fmt.Fprintf(bw, `{"time":%q,"msg":"close","decision":"allow","mode":"report","listener":"explicit","client":%q,"identity":"default","products":[%q],"method":"CONNECT","host":%q,"port":443,"rule":%q,"source":"000_d49fc179dcbbed47.txt","reason":"rule","product":%q,"ip":"203.0.113.%d","trace_id":%q,"bytes_up":%d,"bytes_down":%d,"duration_ms":%d}`+"\n",
				ts, client, product, a.host, a.rule, product, rng.IntN(250), trace, rng.IntN(1<<16), rng.IntN(1<<20), rng.IntN(60000))
		case r < 95:
			fmt.Fprintf(bw, `{"time":%q,"msg":"decision","decision":"would-deny","mode":"report","listener":"explicit","client":%q,"identity":"default","products":[%q],"method":"CONNECT","host":%q,"port":443,"reason":"no-rule","trace_id":%q}`+"\n",
				ts, client, product, deniedHost(rng.IntN(200)), trace)
		default:
			fmt.Fprintf(bw, `{"time":%q,"msg":"decision","decision":"deny","mode":"report","listener":"explicit","client":%q,"identity":"","products":[],"method":"CONNECT","host":"api.services.cloud.netapp.com","port":443,"reason":"auth","trace_id":%q}`+"\n",
				ts, client, trace)
		}
		t = t.Add(step)
	}
	return bw.Flush()
}
