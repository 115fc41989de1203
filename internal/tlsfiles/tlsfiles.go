// Package tlsfiles serves a TLS server's certificate, key and client CAs
// from files and reads them again when they change, so a renewed
// certificate (cert-manager rewriting a Secret, certbot's deploy hook) is
// used from the next handshake on, without a restart and without touching
// the connections already open.
//
// The files are looked at, at most once per Interval, by the handshake
// that needs them: nothing runs between handshakes, and a file that is
// being rewritten when it is looked at (a key that does not match its
// certificate yet) leaves the last good pair in use until the next look.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"
	"time"
)

// Interval is how often, at most, the files are looked at by default.
const Interval = time.Second

// Server holds the current certificate and client CAs.
type Server struct {
	certFile, keyFile, caFile string
	require                   bool
	interval                  time.Duration
	onReload                  func(err error)

	mu      sync.Mutex // guards what follows: handshakes run concurrently
	checked time.Time  // the last look at the files
	seen    [3]stamp   // the files as they were then
	conf    *tls.Config
}

// stamp is what tells that a file changed: a renamed-over file (an atomic
// rewrite, a Kubernetes Secret's symlink swap) changes its inode, an
// edited one its size or modification time.
type stamp struct {
	ino     uint64
	size    int64
	modTime time.Time
}

// Options are what a Server is built from.
type Options struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, verifies client certificates; with
	// RequireClientCert a handshake without one is refused.
	ClientCAFile      string
	RequireClientCert bool
	// Interval between looks at the files; 0 means Interval, a negative
	// value every handshake (for tests).
	Interval time.Duration
	// OnReload is called after the files changed: err is nil when the new
	// ones are in use, else why they were refused.
	OnReload func(err error)
}

// New reads the files once; it fails if they do not load.
func New(o Options) (*Server, error) {
	s := &Server{certFile: o.CertFile, keyFile: o.KeyFile, caFile: o.ClientCAFile, require: o.RequireClientCert,
		interval: o.Interval, onReload: o.OnReload}
	if s.interval == 0 {
		s.interval = Interval
	}
	s.seen = s.stamps()
	conf, err := s.load()
	if err != nil {
		return nil, err
	}
	s.conf, s.checked = conf, time.Now()
	return s, nil
}

// Config is the listener's tls.Config: each handshake asks the Server for
// the current one.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.current(), nil
		},
	}
}

// current returns the config in use, after reading the files again if
// they changed since the last look.
func (s *Server) current() *tls.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.checked) >= s.interval {
		s.checked = now
		if st := s.stamps(); st != s.seen {
			s.seen = st
			conf, err := s.load()
			if err == nil {
				s.conf = conf
			}
			if s.onReload != nil {
				s.onReload(err)
			}
		}
	}
	return s.conf
}

func (s *Server) stamps() [3]stamp {
	var st [3]stamp
	for i, f := range []string{s.certFile, s.keyFile, s.caFile} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			st[i] = stamp{ino: inode(fi), size: fi.Size(), modTime: fi.ModTime()}
		}
	}
	return st
}

// load reads the files into a server config.
func (s *Server) load() (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s with key %s: %w", s.certFile, s.keyFile, err)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		// A proxy speaks HTTP/1.1: CONNECT and absolute-form requests.
		NextProtos: []string{"http/1.1"},
	}
	if s.caFile != "" {
		pool, err := LoadCertPool(s.caFile)
		if err != nil {
			return nil, err
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.VerifyClientCertIfGiven
		if s.require {
			conf.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return conf, nil
}

// LoadCertPool reads a PEM file of CA certificates; it fails when the file
// holds none, so that a wrong file is not taken for "trust nothing".
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, &certFileError{file, "a certificate does not parse: " + err.Error()}
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, &certFileError{file, "no PEM certificate in it"}
	}
	return pool, nil
}

type certFileError struct{ file, why string }

func (e *certFileError) Error() string { return e.file + ": " + e.why }
