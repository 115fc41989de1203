package dns

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// A flood of 2,000 queries, from 100 clients at once, over UDP and TCP:
// every one gets an answer or SERVFAIL (busy), each answered one a
// decision line, the remembered answers stay within their bound, and
// once it is over the goroutines are back where they were.
func TestFloodIsBounded(t *testing.T) {
	answers := NewAnswers(100)
	d := newDoor(t, doorOpts{options: Options{MaxInFlight: 32}})
	d.srv.answers = answers
	baseline := runtime.NumGoroutine()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	const clients, perClient = 100, 20
	var (
		mu     sync.Mutex
		rcodes = map[int]int{}
		failed []error
		wg     sync.WaitGroup
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			proto := "udp"
			if c%5 == 0 {
				proto = "tcp"
			}
			cl := &mdns.Client{Net: proto, Timeout: 10 * time.Second}
			for i := range perClient {
				var m *mdns.Msg
				switch i % 4 {
				case 0: // allowed, a name of its own: the remembered answers grow
					m = new(mdns.Msg).SetQuestion(fmt.Sprintf("n%d-%d.cdn.example.com.", c, i), mdns.TypeA)
				case 1:
					m = new(mdns.Msg).SetQuestion("www.example.com.", mdns.TypeA)
				case 2: // denied
					m = new(mdns.Msg).SetQuestion(fmt.Sprintf("x%d-%d.tunnel.example.org.", c, i), mdns.TypeA)
				default:
					m = new(mdns.Msg).SetQuestion("www.example.com.", mdns.TypeTXT)
				}
				r, _, err := cl.Exchange(m, d.addr)
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					rcodes[r.Rcode]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range rcodes {
		total += n
	}
	if len(failed) > 0 || total != clients*perClient {
		t.Fatalf("%d answers, %d failures (first: %v); want %d answers", total, len(failed), failed, clients*perClient)
	}
	busy := d.srv.Stats().Busy
	if got := int64(len(d.log.lines(t))) + busy; got < clients*perClient {
		t.Errorf("%d decision lines + %d busy, want one of them for each of the %d queries", got-busy, busy, clients*perClient)
	}
	if rcodes[mdns.RcodeServerFailure] != int(busy) {
		t.Errorf("%d SERVFAIL, %d counted busy", rcodes[mdns.RcodeServerFailure], busy)
	}
	if n := answers.Len(); n > 100 {
		t.Errorf("%d names remembered, bound 100", n)
	}
	t.Logf("rcodes %v, busy %d, names remembered %d", rcodes, busy, answers.Len())

	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline+5 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after the flood, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Errorf("the heap grew by %d MiB over the flood", grew>>20)
	}
}

// Beyond MaxInFlight queries a query is answered SERVFAIL at once.
func TestInFlightLimit(t *testing.T) {
	d := newDoor(t, doorOpts{options: Options{MaxInFlight: 4, UpstreamTimeout: time.Second}})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &mdns.Client{Net: "udp", Timeout: 10 * time.Second}
			c.Exchange(new(mdns.Msg).SetQuestion("slow.example.com.", mdns.TypeA), d.addr)
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(d.srv.slots) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 slow queries in flight", len(d.srv.slots))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := d.ask("udp", "www.example.com.", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("a fifth query: %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
	if d.srv.Stats().Busy != 1 {
		t.Errorf("busy %d, want 1", d.srv.Stats().Busy)
	}
	wg.Wait()
	if r := d.ask("udp", "www.example.com.", mdns.TypeA); r.Rcode != mdns.RcodeSuccess {
		t.Errorf("after the slow ones: %s", mdns.RcodeToString[r.Rcode])
	}
}

// Beyond MaxTCPConns open connections, the next waits to be accepted.
func TestTCPConnectionLimit(t *testing.T) {
	d := newDoor(t, doorOpts{options: Options{MaxTCPConns: 4}})
	var held []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", d.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	answered := make(chan error, 1)
	go func() {
		c := &mdns.Client{Net: "tcp", Timeout: 10 * time.Second}
		_, _, err := c.Exchange(new(mdns.Msg).SetQuestion("www.example.com.", mdns.TypeA), d.addr)
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a fifth connection was served while four were open (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Close()
	held = held[1:]
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("after one closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fifth connection was never served")
	}
}
