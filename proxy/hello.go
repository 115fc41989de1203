package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// maxHelloBytes bounds what egret reads of a ClientHello before deciding
// (DESIGN §5: larger is bad-hello). A hello split over several records
// carries a 5-byte header per record; 64 KiB of handshake message needs at
// most five of them, plus the 4-byte handshake header.
const maxHelloBytes = 64<<10 + 4 + 5*5

var (
	errHelloTooLarge = errors.New("ClientHello larger than 64 KiB")
	errHelloRead     = errors.New("ClientHello read") // stops the handshake once the hello is parsed
	errOffersECH     = errors.New("ClientHello offers Encrypted Client Hello")
)

// helloHeadLen is the TLS record header (5 bytes) and the handshake
// message type that follows it: enough to tell a ClientHello from noise
// that happens to start with 0x16.
const helloHeadLen = 6

// startsClientHello reports whether head (helloHeadLen bytes) opens a
// ClientHello: a handshake record of TLS 1.0-1.3's record versions
// (0x0300-0x0304; hellos use 0x0301 or 0x0303), a length a record may
// have, and the message type client_hello (1).
func startsClientHello(head []byte) bool {
	n := int(head[3])<<8 | int(head[4])
	return head[0] == 0x16 && head[1] == 3 && head[2] <= 4 && n >= 4 && n <= 16384+2048 && head[5] == 1
}

// clientHello is what egret takes from a ClientHello: the name it asks
// for, and the bytes it arrived in, to be replayed upstream untouched.
type clientHello struct {
	serverName string
	offersECH  bool
	raw        []byte
}

// readClientHello reads one ClientHello from r. crypto/tls does the
// parsing (multi-record hellos included): a server handshake over a
// read-only connection stops, through GetConfigForClient, as soon as the
// hello is parsed. Every byte read is recorded, whether or not the hello
// parsed, so nothing is lost for the replay. first are bytes already read
// from the connection.
func readClientHello(c net.Conn, first []byte) (clientHello, error) {
	rec := &recordingConn{Conn: c, buf: append(make([]byte, 0, 2048), first...), pending: len(first)}
	var h clientHello
	cfg := &tls.Config{
		// Called only when the hello carries the ECH extension (real or
		// GREASE), before crypto/tls tries to decrypt it: the outer name
		// may not be the one the client is going to. The listener denies
		// it, or decides by that outer name (ECHOuterSNI).
		GetEncryptedClientHelloKeys: func(chi *tls.ClientHelloInfo) ([]tls.EncryptedClientHelloKey, error) {
			h.serverName, h.offersECH = chi.ServerName, true
			return nil, errOffersECH
		},
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			h.serverName = chi.ServerName
			return nil, errHelloRead
		},
	}
	err := tls.Server(rec, cfg).Handshake()
	h.raw = rec.buf
	switch {
	case errors.Is(err, errHelloRead), errors.Is(err, errOffersECH):
		return h, nil
	case err == nil:
		return h, errors.New("TLS handshake completed without a ClientHello") // cannot happen
	}
	return h, err
}

// recordingConn is the read side of a client connection during the
// ClientHello: it records what it reads (up to maxHelloBytes) and drops
// what the TLS server would write (alerts), so the client sees nothing of
// egret's parse.
type recordingConn struct {
	net.Conn
	buf     []byte
	pending int // bytes at the start of buf not yet handed to the reader
}

func (r *recordingConn) Read(p []byte) (int, error) {
	if r.pending > 0 {
		n := copy(p, r.buf[len(r.buf)-r.pending:])
		r.pending -= n
		return n, nil
	}
	room := maxHelloBytes - len(r.buf)
	if room <= 0 {
		return 0, errHelloTooLarge
	}
	if len(p) > room {
		p = p[:room]
	}
	n, err := r.Conn.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

func (r *recordingConn) Write(p []byte) (int, error)      { return len(p), nil }
func (r *recordingConn) Close() error                     { return nil }
func (r *recordingConn) SetDeadline(time.Time) error      { return nil }
func (r *recordingConn) SetWriteDeadline(time.Time) error { return nil }

// The read deadline is the caller's (the read-header timeout), set on the
// real connection before the parse.
func (r *recordingConn) SetReadDeadline(time.Time) error { return nil }
