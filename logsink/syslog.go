// Package logsink delivers decision lines to a syslog server: RFC 5424
// messages over TCP (RFC 6587 octet counting, which rsyslog, syslog-ng and
// the OpenTelemetry collector's syslog receiver read) or UDP (RFC 5426),
// the JSON line as the message.
//
// A Write returns once the line is handed to the kernel for the server, or
// with an error: the proxy writes the decision before it opens the tunnel
// and refuses the request (503) when the sink cannot take it. Over TCP a
// server that closed the connection (a restart, a stop) is noticed before
// the next line is written, so that line goes to a new connection or
// fails; it is not written into a dead socket and lost.
//
// The standard library's log/syslog is not used: it writes the older
// BSD format (RFC 3164) without octet counting, and is frozen.
package logsink

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Syslog writes each line as one RFC 5424 message.
type Syslog struct {
	network, addr string
	pri           string // "<PRI>" of the facility at severity informational
	hostname, pid string
	timeout       time.Duration

	mu         sync.Mutex
	buf        []byte // the message being sent, reused
	conn       net.Conn
	raw        syscall.RawConn // conn's descriptor, for the closed-peer check
	retryAfter time.Time       // no dial before this after a failed one
	lastErr    error
}

// redialPause is how long a failed dial is remembered: while the server is
// down, requests fail at once instead of each waiting for a dial.
const redialPause = time.Second

// facilities are the syslog facility names egret accepts.
var facilities = map[string]int{
	"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

const severityInfo = 6

// IsSyslog reports whether target names a syslog sink.
func IsSyslog(target string) bool {
	return strings.HasPrefix(target, "syslog://") || strings.HasPrefix(target, "syslog+tcp://") || strings.HasPrefix(target, "syslog+udp://")
}

// ParseSyslog checks a syslog target: syslog://HOST:PORT or
// syslog+tcp://HOST:PORT (TCP), syslog+udp://HOST:PORT (UDP), with an
// optional ?facility=NAME (default local0). It returns the network, the
// address and the facility's number.
func ParseSyslog(target string) (network, addr string, facility int, err error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", "", 0, fmt.Errorf("%q is not a URL", target)
	}
	switch u.Scheme {
	case "syslog", "syslog+tcp":
		network = "tcp"
	case "syslog+udp":
		network = "udp"
	default:
		return "", "", 0, fmt.Errorf("%q: the scheme is syslog:// (TCP), syslog+tcp:// or syslog+udp://", target)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return "", "", 0, fmt.Errorf("%q: write %s://HOST:PORT[?facility=local0]", target, u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return "", "", 0, fmt.Errorf("%q: the server is HOST:PORT (e.g. syslog://127.0.0.1:514)", target)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", 0, fmt.Errorf("%q: the port must be a number from 1 to 65535", target)
	}
	facility = facilities["local0"]
	for k, v := range u.Query() {
		if k != "facility" || len(v) != 1 {
			return "", "", 0, fmt.Errorf("%q: the only parameter is facility (e.g. ?facility=local3)", target)
		}
		f, ok := facilities[v[0]]
		if !ok {
			return "", "", 0, fmt.Errorf("%q: %q is not a facility (user, daemon, auth, authpriv, syslog, local0 … local7)", target, v[0])
		}
		facility = f
	}
	return network, u.Host, facility, nil
}

// DialSyslog connects to the server target names (see ParseSyslog);
// timeout bounds each dial and each write.
func DialSyslog(target string, timeout time.Duration) (*Syslog, error) {
	network, addr, facility, err := ParseSyslog(target)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "-"
	}
	s := &Syslog{network: network, addr: addr, pri: "<" + strconv.Itoa(facility*8+severityInfo) + ">",
		hostname: host, pid: strconv.Itoa(os.Getpid()), timeout: timeout}
	if s.conn, err = net.DialTimeout(network, addr, timeout); err != nil {
		return nil, fmt.Errorf("decision log: syslog server %s: %w", addr, err)
	}
	return s, nil
}

// Write sends p, one JSON line, as one message.
func (s *Syslog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var skip int
	s.buf, skip = s.message(s.buf[:0], bytes.TrimSuffix(p, []byte("\n")))
	if err := s.send(s.buf[skip:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// message appends line to b as an RFC 5424 message: PRI VERSION TIMESTAMP
// HOSTNAME APP-NAME PROCID MSGID (the line's msg: decision or close) and
// no structured data. Over TCP it is framed by its length (octet
// counting), written first as a fixed-width placeholder and then filled;
// the message starts at b[skip:].
func (s *Syslog) message(b, line []byte) (_ []byte, skip int) {
	const width = 7 // digits of the length: a line is far below 10 MB
	if s.network == "tcp" {
		b = append(b, "0000000 "...)
	}
	start := len(b)
	b = append(b, s.pri...)
	b = append(b, "1 "...)
	b = time.Now().UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, s.hostname...)
	b = append(b, " egret "...)
	b = append(b, s.pid...)
	b = append(b, ' ')
	b = append(b, msgID(line)...)
	b = append(b, " - "...)
	b = append(b, line...)
	if s.network == "tcp" {
		// RFC 6587 wants the length without leading zeros: skip them.
		var digits [width]byte
		n := strconv.AppendInt(digits[:0], int64(len(b)-start), 10)
		skip = width - len(n)
		copy(b[skip:], n)
	}
	return b, skip
}

// msgID is the value of the line's "msg" field, "-" if it has none that
// fits a MSGID (printable ASCII, at most 32 characters).
func msgID(line []byte) string {
	const key = `"msg":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return "-"
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 || j > 32 {
		return "-"
	}
	for _, c := range rest[:j] {
		if c < 33 || c > 126 || c == '\\' {
			return "-"
		}
	}
	return string(rest[:j])
}

// send writes msg on the connection, after replacing one the server has
// closed; a failed write is tried once more on a new connection.
func (s *Syslog) send(msg []byte) error {
	for attempt := 0; ; attempt++ {
		if s.conn != nil && s.network == "tcp" && peerClosed(s.conn) {
			s.drop()
		}
		if s.conn == nil {
			if err := s.redial(); err != nil {
				return err
			}
		}
		s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
		_, err := s.conn.Write(msg)
		if err == nil {
			return nil
		}
		s.drop()
		if attempt > 0 {
			return fmt.Errorf("syslog server %s: %w", s.addr, err)
		}
	}
}

func (s *Syslog) redial() error {
	if time.Now().Before(s.retryAfter) {
		return s.lastErr
	}
	c, err := net.DialTimeout(s.network, s.addr, s.timeout)
	if err != nil {
		s.retryAfter, s.lastErr = time.Now().Add(redialPause), fmt.Errorf("syslog server %s: %w", s.addr, err)
		return s.lastErr
	}
	s.conn = c
	return nil
}

func (s *Syslog) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// peerClosed reports whether the server has closed c: a read that would
// not block returns end of stream. A syslog server sends nothing, so
// anything else means the connection is still open.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err != nil && !errors.Is(err, unix.EAGAIN)
		return true // never wait
	})
	return closed
}

// Close closes the connection.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	return nil
}
