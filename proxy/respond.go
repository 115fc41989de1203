package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
)

// writeStatus writes a short text response egret itself generates. reason,
// when set, goes in X-Egret-Reason. It never includes internal error text.
// The response leaves in one write: http.Response.Write makes one per
// header line, each a syscall and a packet on a raw connection.
func writeStatus(w io.Writer, status int, reason, body string, closeConn bool, extra ...string) error {
	resp := &http.Response{
		StatusCode:    status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Close:         closeConn,
	}
	if reason != "" {
		resp.Header.Set("X-Egret-Reason", reason)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		resp.Header.Set(extra[i], extra[i+1])
	}
	var buf bytes.Buffer
	buf.Grow(256 + len(body))
	resp.Write(&buf) // cannot fail: a bytes.Buffer and a strings.Reader
	_, err := w.Write(buf.Bytes())
	return err
}

// upstreamStatus maps a dial or round-trip error to 504 (too slow) or 502
// (unreachable), with a body that names no internal detail.
func upstreamStatus(err error) (int, string) {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
		return http.StatusGatewayTimeout, "egret: upstream did not answer in time\n"
	}
	return http.StatusBadGateway, "egret: upstream unreachable\n"
}

// hopByHop are the headers that describe one connection, not the message
// (RFC 9110 §7.6.1), plus the proxy's own credentials.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes hop-by-hop headers, including those the
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}
