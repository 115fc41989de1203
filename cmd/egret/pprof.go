//go:build pprof

package main

// Profiling for performance work, compiled in only with `-tags pprof`:
// with EGRET_PPROF=127.0.0.1:6060 set, egret serves net/http/pprof there
// (go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=10).
// Release builds contain none of it.

import (
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("EGRET_PPROF")
	if addr == "" {
		return
	}
	go func() {
		err := http.ListenAndServe(addr, nil)
		fmt.Fprintln(os.Stderr, "egret: pprof:", err)
	}()
}
