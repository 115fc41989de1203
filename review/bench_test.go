package review

import (
	"bytes"
	"compress/gzip"
	"testing"
	"time"

	"github.com/egret-proxy/egret/review/synth"
)

// BenchmarkReview reads a synthetic log of 100,000 lines (the same 200
// denied names, 3 allowed names, two products), plain and gzip, and
// reports lines per second. `make bench-review` measures the whole command
// on 1,000,000 lines with its peak memory.
func BenchmarkReview(b *testing.B) {
	const lines = 100_000
	var plain bytes.Buffer
	if err := synth.Write(&plain, lines, t0, 100*time.Millisecond, 1); err != nil {
		b.Fatal(err)
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(plain.Bytes())
	zw.Close()
	for _, bc := range []struct {
		name string
		data []byte
	}{{"plain", plain.Bytes()}, {"gzip", zipped.Bytes()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(plain.Len()))
			for b.Loop() {
				a := NewAggregator(Filter{})
				if err := a.Read("bench.log", bytes.NewReader(bc.data)); err != nil {
					b.Fatal(err)
				}
				if a.Stats().Lines != lines {
					b.Fatalf("read %d lines", a.Stats().Lines)
				}
				a.Build(nil)
			}
			b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
