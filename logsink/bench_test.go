package logsink

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkSyslogTCP is the cost of one decision line to a syslog server
// over loopback TCP (a server that reads and discards), the closed-peer
// check included.
func BenchmarkSyslogTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	s, err := DialSyslog("syslog://"+ln.Addr().String(), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p := line(1, "decision")
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := s.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileAppend is the file sink's cost for the same line, for
// comparison: one write(2) to a file opened with O_APPEND.
func BenchmarkFileAppend(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "decisions.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	p := line(1, "decision")
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := f.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}
