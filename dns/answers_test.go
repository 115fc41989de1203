package dns

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestAnswersExpireAndStayBounded(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a := NewAnswers(3)
	a.now = func() time.Time { return now }
	ip := netip.MustParseAddr
	a.Add("a.example.com", []netip.Addr{ip("192.0.2.1"), ip("::ffff:192.0.2.2")}, 10*time.Second)
	for _, tc := range []struct {
		name, addr string
		want       bool
	}{
		{"a.example.com", "192.0.2.1", true},
		{"a.example.com", "192.0.2.2", true}, // stored unmapped
		{"a.example.com", "::ffff:192.0.2.1", true},
		{"a.example.com", "192.0.2.3", false},
		{"b.example.com", "192.0.2.1", false},
	} {
		if got := a.Answered(tc.name, ip(tc.addr)); got != tc.want {
			t.Errorf("Answered(%s, %s) = %v", tc.name, tc.addr, got)
		}
	}
	now = now.Add(10*time.Second + AnswerGrace - time.Second)
	if !a.Answered("a.example.com", ip("192.0.2.1")) {
		t.Error("forgotten within TTL + grace")
	}
	a.Add("a.example.com", []netip.Addr{ip("192.0.2.1")}, time.Minute) // renewed
	now = now.Add(2 * time.Second)
	if !a.Answered("a.example.com", ip("192.0.2.1")) || a.Answered("a.example.com", ip("192.0.2.2")) {
		t.Error("after TTL + grace: the renewed address must stay, the other go")
	}
	for i := range 5 {
		a.Add(fmt.Sprintf("n%d.example.com", i), []netip.Addr{ip("192.0.2.9")}, time.Minute)
	}
	if a.Len() != 3 || a.Answered("n0.example.com", ip("192.0.2.9")) || !a.Answered("n4.example.com", ip("192.0.2.9")) {
		t.Errorf("bound 3: %d names, oldest kept or newest lost", a.Len())
	}
	var many []netip.Addr
	for i := range 40 {
		many = append(many, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	a.Add("many.example.com", many, time.Minute)
	if a.Answered("many.example.com", many[0]) || !a.Answered("many.example.com", many[39]) {
		t.Error("per-name bound: the first addresses should go, the last stay")
	}
}
