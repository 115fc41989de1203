package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// failingWriter fails every write while fail is set, and keeps what it
// accepts otherwise.
type failingWriter struct {
	fail atomic.Bool
	buf  syncBuffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail.Load() {
		return 0, errors.New("disk full")
	}
	return w.buf.Write(p)
}

// TestDecisionLogFailClosed: when the decision log cannot be written,
// traffic is refused with 503 and the server is not ready; once a write
// succeeds again, it is (DESIGN §7: nothing passes unlogged).
func TestDecisionLogFailClosed(t *testing.T) {
	w := &failingWriter{}
	w.fail.Store(true)
	h := newHarness(t, harnessOpts{log: w})
	admin := httptest.NewServer(h.srv.AdminHandler())
	t.Cleanup(admin.Close)

	if err := h.srv.Ready(); err != nil {
		t.Fatalf("Ready before any write: %v", err)
	}
	for _, tt := range []struct {
		name, method, target string
	}{
		{"allowed CONNECT", "CONNECT", fmt.Sprintf("example.com:%d", h.httpPort)},
		{"allowed GET", "GET", fmt.Sprintf("http://example.com:%d/x", h.httpPort)},
		{"denied CONNECT", "CONNECT", "denied.example:443"},
		{"denied GET", "GET", fmt.Sprintf("http://denied.example:%d/x", h.httpPort)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			var resp *http.Response
			var body string
			if tt.method == "CONNECT" {
				resp, body = c.connect(t, tt.target, "")
			} else {
				c.send(t, "GET "+tt.target+" HTTP/1.1\r\nHost: example.com\r\n\r\n")
				resp, body = c.response(t, "GET")
			}
			if resp.StatusCode != 503 {
				t.Fatalf("%s %s with a broken log: %d %q, want 503", tt.method, tt.target, resp.StatusCode, body)
			}
			if strings.Contains(body, "disk full") {
				t.Errorf("internal error in the body: %q", body)
			}
		})
	}
	select {
	case hdr := <-h.lastHost:
		t.Errorf("a request reached the upstream with a broken log: %v", hdr)
	default:
	}
	err := h.srv.Ready()
	if err == nil || !strings.Contains(err.Error(), "decision log") {
		t.Fatalf("Ready with a broken log: %v, want an error naming the decision log", err)
	}
	if resp, err := http.Get(admin.URL + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Errorf("/readyz with a broken log: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if w.buf.String() != "" {
		t.Errorf("log has %q", w.buf.String())
	}

	// The disk recovers: the next request is served and logged, and the
	// server is ready again.
	w.fail.Store(false)
	resp, err := h.client("", "").Get(fmt.Sprintf("http://example.com:%d/again", h.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "http upstream: GET /again " {
		t.Fatalf("after recovery: %d %q", resp.StatusCode, body)
	}
	if err := h.srv.Ready(); err != nil {
		t.Fatalf("Ready after recovery: %v", err)
	}
	if resp, err := http.Get(admin.URL + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/readyz after recovery: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	lines := waitLines(t, &w.buf, map[string]any{"msg": "close"})
	wantFields(t, lines[0], map[string]any{"path": "/again", "status": 200})
	all := parseLines(t, w.buf.String())
	wantFields(t, all[0], map[string]any{"msg": "decision", "decision": "allow", "path": "/again"})
}
