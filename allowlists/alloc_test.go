package allowlists_test

import (
	"testing"

	"github.com/egret-proxy/egret/allowlists"
)

// TestDecideNoAllocs checks that Decide allocates nothing on the hot path:
// exact and wildcard hits and misses over the 100k-rule synthetic policy
// (see bench_test.go). Allocation counts are deterministic, so this is no
// timing assertion.
func TestDecideNoAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the 100k-rule policy")
	}
	sp := synthetic(t, 100000)
	for _, kind := range []string{"exact", "wildcard", "miss"} {
		t.Run(kind, func(t *testing.T) {
			ds := sp.dests[kind]
			if len(ds) == 0 {
				t.Fatal("no destinations")
			}
			j := 0
			var v allowlists.Verdict
			allocs := testing.AllocsPerRun(len(ds), func() {
				v = sp.policy.Decide(sp.id, ds[j%len(ds)])
				j++
			})
			sinkVerdict = v
			if allocs != 0 {
				t.Errorf("Decide(%s) over %d rules: %v allocations per call, want 0", kind, sp.rules, allocs)
			}
		})
	}
}
