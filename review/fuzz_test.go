package review

import (
	"bytes"
	"testing"
	"time"
)

// FuzzRead feeds arbitrary logs to a review: it must never panic, every
// non-empty line must be counted once, and the report must build.
func FuzzRead(f *testing.F) {
	f.Add([]byte(deny(0, "a.example.net", 443, "no-rule", "site") + "\n" + allow(time.Hour, "api.site.example", "api.site.example", "site")))
	f.Add([]byte(`{"time":"2026-11-21T10:00:00Z","msg":"decision","decision":"deny","products":[1,"x"],"host":"","port":-1}`))
	f.Add([]byte("\x1f\x8b\x08\x00garbage"))
	f.Add([]byte(`{"time":"0001-01-01T00:00:00Z","msg":"decision","decision":"would-deny","products":["p"],"host":"[::1]","port":0,"reason":"path","path":"/../x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a := NewAggregator(Filter{})
		if err := a.Read("fuzz.log", bytes.NewReader(data)); err != nil {
			return // a broken gzip stream is an error, not a panic
		}
		s := a.Stats()
		if s.Decisions+s.Malformed+s.Skipped > s.Lines {
			t.Fatalf("stats %+v count more than the lines", s)
		}
		r := a.Build(nil)
		if _, _, err := r.Patches(); err != nil {
			t.Fatal(err)
		}
	})
}
