// Command genlog writes a synthetic decision log for benchmarking egret
// review: go run ./scripts/genlog -n 1000000 > decisions.log
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/egret-proxy/egret/review/synth"
)

func main() {
	n := flag.Int("n", 1_000_000, "number of lines")
	seed := flag.Uint64("seed", 1, "random seed; the same seed gives the same log")
	flag.Parse()
	start := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	// Spread the lines over a day, whatever their number.
	step := 24 * time.Hour / time.Duration(max(*n, 1))
	if err := synth.Write(os.Stdout, *n, start, step, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "genlog:", err)
		os.Exit(1)
	}
}
