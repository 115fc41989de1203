package bench

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// ServeRelay is the bare splice relay, the user-space limit a CONNECT
// proxy is measured against: accept, read the CONNECT, dial, answer 200,
// then io.Copy both ways (splice(2) between TCP sockets). No policy, no
// log, no limits; the CONNECT's host is ignored and dialHost dialled on its
// port. It serves until l is closed.
func ServeRelay(l net.Listener, dialHost string) error {
	for {
		c, err := l.Accept()
		if err != nil {
			ne, ok := err.(net.Error)
			if ok && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(10 * time.Millisecond) // out of descriptors: keep serving the tunnels open
				continue
			}
			return err
		}
		go relayConn(c, dialHost)
	}
}

func relayConn(c net.Conn, dialHost string) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	_, port, err := net.SplitHostPort(req.RequestURI)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", net.JoinHostPort(dialHost, port))
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	defer up.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() { relayCopy(c, up); close(done) }()
	relayCopy(up, c)
	<-done
}

// relayCopy copies src to dst and passes the end on as a half-close.
func relayCopy(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.(*net.TCPConn).CloseWrite()
}
