package proxy

import (
	"bufio"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// answerWithin bounds how long a refusal may take in these tests: well
// inside the 60 s read-header timeout they run with, so an answer at all
// means it came at once, not at the timeout. It is no latency assertion.
const answerWithin = 15 * time.Second

// noise is n bytes of seeded random binary, with first as its first byte
// when first is non-zero.
func noise(seed uint64, n int, first byte) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if first != 0 {
		b[0] = first
	}
	return b
}

func garbageHarness(t *testing.T) *harness {
	return newHarness(t, harnessOpts{mutate: func(r *Rules) { r.Limits.ReadHeaderTimeout = 60 * time.Second }})
}

// TestExplicitRefusesGarbageAtOnce: a first line that can never be a
// request gets 400 as soon as egret sees it, with a bad-request line in
// the log, although the read-header timeout is 60 s.
func TestExplicitRefusesGarbageAtOnce(t *testing.T) {
	h := garbageHarness(t)
	inputs := map[string][]byte{
		"NUL in the method":         []byte("GE\x00T / HTTP/1.1\r\n"),
		"control in the target":     []byte("GET /a\x01b HTTP/1.1\r\n"),
		"method not a token":        []byte("GET(/) / HTTP/1.1\r\n"),
		"non-ASCII method":          []byte("GÉT / HTTP/1.1\r\n"),
		"leading space":             []byte(" GET / HTTP/1.1\r\n"),
		"TLS to the plain listener": noise(7, 517, 0x16),
		"9 KiB line, no line end":   []byte("GET /" + strings.Repeat("a", 9<<10)),
	}
	for seed := uint64(1); seed <= 5; seed++ {
		inputs["4 KiB of noise, seed "+strconv.FormatUint(seed, 10)] = noise(seed, 4<<10, 0)
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.SetDeadline(time.Now().Add(answerWithin))
			// The peer may close while noise is still being written: what
			// matters is the answer, so a write error is not the verdict.
			go c.Write(in)
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("no answer within %v (timeout 60 s): %v", answerWithin, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if !resp.Close {
				t.Error("the 400 does not close the connection")
			}
		})
	}
	lines := waitLines(t, h.logBuf, map[string]any{"listener": "explicit", "reason": "bad-request", "status": 400, "decision": "deny"})
	for len(lines) < len(inputs) {
		time.Sleep(10 * time.Millisecond)
		lines = linesWith(parseLines(t, h.logBuf.String()), map[string]any{"listener": "explicit", "reason": "bad-request", "status": 400})
	}
	if len(lines) != len(inputs) {
		t.Errorf("%d bad-request lines for %d refusals:\n%s", len(lines), len(inputs), h.logBuf.String())
	}
}

// TestExplicitKeepsWaitingForAGoodRequest is the other side: a request
// line that is still arriving, however slowly, is not refused early.
func TestExplicitKeepsWaitingForAGoodRequest(t *testing.T) {
	h := garbageHarness(t)
	c := dialRaw(t, h.addr)
	req := "GET http://example.com:" + strconv.Itoa(h.httpPort) + "/slow HTTP/1.1\r\nHost: example.com\r\n\r\n"
	for i := 0; i < len(req); i += 7 { // split inside the method, the CRLF and the headers
		c.send(t, req[i:min(i+7, len(req))])
		time.Sleep(5 * time.Millisecond)
	}
	if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "http upstream: GET /slow " {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// TestTransparentRefusesGarbageAtOnce: on the transparent listener, bytes
// that are neither a TLS record header nor an HTTP method are closed at
// once as bad-hello; noise after a first byte of 0x16 is refused at the
// record header, and noise after an upper-case letter gets the explicit
// listener's 400.
func TestTransparentRefusesGarbageAtOnce(t *testing.T) {
	h := garbageHarness(t)
	dial := h.transparent()
	closedInputs := map[string][]byte{
		"noise":                      noise(11, 4<<10, 0x01),
		"noise from 0x16":            noise(12, 4<<10, 0x16),
		"a TLS alert, not a hello":   append([]byte{0x15, 3, 3, 0, 2}, 2, 40),
		"a handshake record, type 2": append([]byte{0x16, 3, 3, 0, 40, 2}, noise(13, 40, 0)...),
		"NUL":                        {0},
	}
	for name, in := range closedInputs {
		t.Run(name, func(t *testing.T) {
			c := dial(elsewhere(443))
			t.Cleanup(func() { c.Close() })
			go c.Write(in)
			closed, got := closedWithin(c, c, answerWithin)
			if !closed {
				t.Fatalf("still open after %v (timeout 60 s)", answerWithin)
			}
			if got != "" {
				t.Errorf("got %q, want the connection closed without an answer", got)
			}
		})
	}
	if n := len(linesWith(h.lines(len(closedInputs)), map[string]any{"listener": "transparent", "reason": "bad-hello", "decision": "deny"})); n != len(closedInputs) {
		t.Errorf("%d bad-hello lines for %d refusals:\n%s", n, len(closedInputs), h.logBuf.String())
	}

	t.Run("noise after an upper-case letter", func(t *testing.T) {
		c := dial(elsewhere(80))
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(answerWithin))
		go c.Write(noise(14, 4<<10, 'G'))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer within %v: %v", answerWithin, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
		waitLines(t, h.logBuf, map[string]any{"listener": "transparent", "reason": "bad-request", "status": 400})
	})
}
