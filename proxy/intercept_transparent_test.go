package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"testing"
)

// Interception on the transparent listener: the ClientHello egret read
// for the SNI is replayed into its own TLS server, and each request inside
// is decided as on the explicit listener; a name without path rules is
// spliced, showing the upstream's own certificate.
func TestInterceptOnTransparentListener(t *testing.T) {
	ih := newInterceptHarness(t, ModeEnforce)
	dial := ih.transparent()
	open := func(name string) (*tls.Conn, *bufio.Reader) {
		tc := tls.Client(dial(elsewhere(ih.upPort)), &tls.Config{ServerName: name, RootCAs: ih.clientCAs})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS to %s through the transparent listener: %v", name, err)
		}
		return tc, bufio.NewReader(tc)
	}

	tc, br := open("svc.example.com")
	if !ih.issuedByEgret(tc) {
		t.Fatal("a path rule's name was not intercepted on the transparent listener")
	}
	host := fmt.Sprintf("svc.example.com:%d", ih.upPort)
	if resp, body := do(t, tc, br, "GET /maven2/x HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); resp.StatusCode != 200 || body != "upstream: GET /maven2/x" {
		t.Errorf("allowed path: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, tc, br, "GET /other HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); resp.Header.Get("X-Egret-Reason") != "path" {
		t.Errorf("path outside the prefixes: %d %q", resp.StatusCode, resp.Header.Get("X-Egret-Reason"))
	}
	fronted := fmt.Sprintf("GET /allowed HTTP/1.1\r\nHost: open.example.com:%d\r\n\r\n", ih.upPort)
	if resp, _ := do(t, tc, br, fronted); resp.Header.Get("X-Egret-Reason") != "host-mismatch" {
		t.Errorf("fronted Host: %d %q", resp.StatusCode, resp.Header.Get("X-Egret-Reason"))
	}
	l := ih.line("for GET /other", requestLine("GET", "/other"))
	wantFields(t, l, map[string]any{"decision": "deny", "reason": "path", "listener": "transparent", "sni": "svc.example.com"})
	tlsLine := ih.line("for the TLS connection", func(l map[string]any) bool { return l["method"] == "TLS" && l["msg"] == "decision" })
	if _, unenforced := tlsLine["paths"]; unenforced {
		t.Errorf("an intercepted connection is logged with paths unenforced: %v", tlsLine)
	}

	tc2, _ := open("open.example.com")
	if !bytes.Equal(tc2.ConnectionState().PeerCertificates[0].Raw, ih.upLeaf) {
		t.Error("a name without path rules was not spliced untouched on the transparent listener")
	}
}
