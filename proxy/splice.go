package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// spliceChunk is how many bytes one direction copies before it re-arms its
// idle deadline. io.Copy into a *net.TCPConn from an *io.LimitedReader over
// a *net.TCPConn still uses splice(2), so the chunking costs no copy.
const spliceChunk = 4 << 20

// tunnel copies bytes both ways between client and upstream until both
// directions have ended, then closes both. A direction's EOF is passed on
// as a half-close (CloseWrite). When neither direction has moved a byte for
// idle, the tunnel is closed. It returns the bytes sent upstream (client
// to upstream) and downstream.
func tunnel(client, upstream net.Conn, idle time.Duration) (up, down int64) {
	t := &activity{}
	t.touch()
	// Downstream runs on the calling goroutine: one goroutine fewer to
	// start, and to keep a stack for, per tunnel.
	done := make(chan struct{})
	go func() { up = copyDirection(upstream, client, idle, t, client, upstream); close(done) }()
	down = copyDirection(client, upstream, idle, t, client, upstream)
	<-done
	client.Close()
	upstream.Close()
	return up, down
}

// activity is the time of the last byte moved in either direction.
type activity struct{ last atomic.Int64 }

func (a *activity) touch() { a.last.Store(time.Now().UnixNano()) }

// quiet reports whether no byte has moved either way for d.
func (a *activity) quiet(d time.Duration) bool {
	return time.Since(time.Unix(0, a.last.Load())) >= d
}

// copyDirection copies src to dst; see tunnel. Between bursts it waits
// for data without holding splice pipes (see probe), then moves what is
// queued, at most spliceChunk at a time so the idle deadline is re-armed.
// On an error other than EOF it closes both connections so the other
// direction ends too.
func copyDirection(dst, src net.Conn, idle time.Duration, t *activity, a, b net.Conn) int64 {
	var total int64
	probe := newProbe(src)
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		limit := int64(spliceChunk)
		queued, waited, err := probe.pending()
		if err == nil && waited && queued == 0 { // end of stream: no splice needed to learn it
			closeWrite(dst)
			return total
		}
		if err == nil {
			if waited && queued > 0 && int64(queued) < limit {
				limit = int64(queued) // splice returns as soon as this is moved
			}
			var n int64
			n, err = io.Copy(dst, &io.LimitedReader{R: src, N: limit})
			total += n
			if n > 0 {
				t.touch()
			}
			if err == nil && n == limit {
				continue // more may come
			}
		}
		switch {
		case err == nil: // EOF from src: pass the half-close on
			closeWrite(dst)
			return total
		case errors.Is(err, os.ErrDeadlineExceeded) && !t.quiet(idle):
			continue // the other direction is busy: not idle
		default: // idle, reset, or the other side closed both
			a.Close()
			b.Close()
			return total
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := socketOf(c).(interface{ CloseWrite() error }); ok { // the socket, beneath a PROXY header
		cw.CloseWrite()
		return
	}
	c.Close()
}
