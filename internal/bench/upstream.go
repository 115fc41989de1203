// Package bench is the load tool behind cmd/egret-bench: loopback
// upstreams, a bare splice relay (the user-space limit a proxy is measured
// against), the scenarios, /proc sampling of the proxy under test, and the
// table that compares runs.
package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The upstreams a run starts, one listener each.
const (
	upStream = iota // reads a hello record, then writes zeros until the client goes (bulk)
	upReply         // reads a hello record, writes replySize bytes, closes (connect, deny)
	upHold          // reads a hello record, writes one byte, then holds the connection (idle)
	upTLS           // HTTPS: a small response per request (tls)
	upHTTP          // plain HTTP: a small response per request, keep-alive (http)
	numUpstreams
)

var upstreamNames = [numUpstreams]string{"stream", "reply", "hold", "tls", "http"}

const (
	replySize = len(bodyText)
	bodyText  = "egret-bench upstream: a small response body of 64 bytes........\n"
)

// Upstreams are the servers a run's traffic ends at, on one host.
type Upstreams struct {
	lns   [numUpstreams]net.Listener
	cert  *x509.Certificate
	tlsCf *tls.Config
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	http  *http.Server
}

// StartUpstreams listens on host: on ports base, base+1, … when base is
// not zero (a redirect or an allowlist must name them), else on free
// ports. name is the name the TLS certificate is for.
func StartUpstreams(host string, base int, name string) (*Upstreams, error) {
	u := &Upstreams{conns: map[net.Conn]struct{}{}}
	for i := range u.lns {
		port := 0
		if base != 0 {
			port = base + i
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			u.Close()
			return nil, fmt.Errorf("upstream %s: %w", upstreamNames[i], err)
		}
		u.lns[i] = l
	}
	cert, err := selfSigned(name)
	if err != nil {
		u.Close()
		return nil, err
	}
	u.cert = cert.Leaf
	u.tlsCf = &tls.Config{Certificates: []tls.Certificate{cert}}
	for i, serve := range map[int]func(net.Conn){upStream: serveStream, upReply: serveReply, upHold: serveHold} {
		u.wg.Add(1)
		go func() { defer u.wg.Done(); u.acceptLoop(u.lns[i], serve) }()
	}
	u.http = &http.Server{Handler: http.HandlerFunc(smallResponse), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: discardLog()}
	go u.http.Serve(tls.NewListener(u.lns[upTLS], u.tlsCf))
	go u.http.Serve(u.lns[upHTTP])
	return u, nil
}

// Port returns the port of upstream i.
func (u *Upstreams) Port(i int) int { return u.lns[i].Addr().(*net.TCPAddr).Port }

// Ports returns every upstream's port, in order.
func (u *Upstreams) Ports() []int {
	ps := make([]int, numUpstreams)
	for i := range ps {
		ps[i] = u.Port(i)
	}
	return ps
}

// RootCAs trusts the upstream's TLS certificate.
func (u *Upstreams) RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(u.cert)
	return p
}

// Close stops every upstream and closes the connections they hold.
func (u *Upstreams) Close() {
	for _, l := range u.lns {
		if l != nil {
			l.Close()
		}
	}
	if u.http != nil {
		u.http.Close()
	}
	u.mu.Lock()
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *Upstreams) acceptLoop(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // EMFILE and the like: back off
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		u.mu.Lock()
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			serve(c)
			c.Close()
			u.mu.Lock()
			delete(u.conns, c)
			u.mu.Unlock()
		}()
	}
}

// readRecord reads one TLS record (the client's hello) and discards it.
func readRecord(r io.Reader) error {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	if hdr[0] != 0x16 {
		return fmt.Errorf("want a TLS handshake record, got type %#x", hdr[0])
	}
	_, err := io.CopyN(io.Discard, r, int64(hdr[3])<<8|int64(hdr[4]))
	return err
}

func serveStream(c net.Conn) {
	if readRecord(c) != nil {
		return
	}
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

func serveReply(c net.Conn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if readRecord(c) != nil {
		return
	}
	io.WriteString(c, bodyText)
}

func serveHold(c net.Conn) {
	if readRecord(c) != nil {
		return
	}
	if _, err := c.Write([]byte{'k'}); err != nil {
		return
	}
	io.Copy(io.Discard, c) // until the client closes
}

func smallResponse(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Length", strconv.Itoa(len(bodyText)))
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, bodyText)
}

// selfSigned makes a P-256 certificate for name, valid for a day.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// helloRecord returns the bytes of a real ClientHello for name, as
// crypto/tls writes it, by running a client handshake into a connection
// that records what is written and has nothing to read.
func helloRecord(name string) ([]byte, error) {
	rec := &recordWriter{}
	err := tls.Client(rec, &tls.Config{ServerName: name}).Handshake()
	if len(rec.buf) == 0 {
		return nil, fmt.Errorf("no ClientHello written: %v", err)
	}
	return rec.buf, nil
}

type recordWriter struct {
	net.Conn // nil: only the methods below are called
	buf      []byte
}

func (r *recordWriter) Write(p []byte) (int, error)      { r.buf = append(r.buf, p...); return len(p), nil }
func (r *recordWriter) Read([]byte) (int, error)         { return 0, io.EOF }
func (r *recordWriter) Close() error                     { return nil }
func (r *recordWriter) SetDeadline(time.Time) error      { return nil }
func (r *recordWriter) SetReadDeadline(time.Time) error  { return nil }
func (r *recordWriter) SetWriteDeadline(time.Time) error { return nil }

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
