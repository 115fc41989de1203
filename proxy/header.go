package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// errHeaderTooLarge is returned when the request line and headers do not
// fit in the configured limit.
var errHeaderTooLarge = errors.New("request header too large")

// maxRequestLine bounds the request line alone: a first line that runs on
// for 8 KiB without ending is no request (Squid, nginx and Go's own server
// draw the line near there too), and is refused then rather than at the
// header limit or timeout.
const maxRequestLine = 8 << 10

// Errors for a first line that can never become a request, seen as soon
// as its bytes arrive (issue: 4 KiB of noise used to wait for the timeout).
var (
	errMethodNotToken   = errors.New("the method is not a token")
	errControlInLine    = errors.New("the request line holds a control character")
	errRequestLineLong  = errors.New("request line longer than 8 KiB")
	errRequestLineEmpty = errors.New("the request line starts with a space")
)

// readRequest reads one request from br. Before net/http parses it, the raw
// header block is checked for what net/http would accept but an
// intermediary must not forward ambiguously (RFC 9112 §11.2, request
// smuggling): obs-fold continuation lines, whitespace before a colon,
// Content-Length together with Transfer-Encoding, several Content-Length
// or Transfer-Encoding fields, and a transfer coding other than chunked.
// net/http would fold the first, drop Content-Length for the third and
// answer 501 for the last; egret refuses them all with 400.
func readRequest(br *bufio.Reader, maxHeaderBytes int) (*http.Request, error) {
	block, err := peekHeaderBlock(br, maxHeaderBytes)
	if err != nil {
		return nil, err
	}
	if err := checkHeaderBlock(block); err != nil {
		return nil, err
	}
	return http.ReadRequest(br)
}

// peekHeaderBlock returns the bytes up to and including the blank line that
// ends the headers, without consuming them. br's buffer must be at least
// maxHeaderBytes long.
func peekHeaderBlock(br *bufio.Reader, max int) ([]byte, error) {
	var line requestLineCheck
	for {
		// Look at everything already buffered (Peek(n) returns exactly n
		// bytes), then wait for at least one more byte.
		buf, _ := br.Peek(br.Buffered())
		if err := line.scan(buf); err != nil {
			return nil, err
		}
		if i := headerEnd(buf); i >= 0 {
			return buf[:i], nil
		}
		if len(buf) >= max {
			return nil, errHeaderTooLarge
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, errHeaderTooLarge
			}
			return nil, err
		}
	}
}

// requestLineCheck refuses a first line that cannot be a request line as
// its bytes arrive: a method that is not a token (RFC 9110 §5.6.2), a
// control character anywhere in the line (NUL included; only the CR of the
// line end is allowed), or 8 KiB without a line end. The rest of the line
// is left to net/http once the head is complete.
type requestLineCheck struct {
	seen     int  // bytes of buf already scanned
	inMethod bool // still in the method (no space seen yet)
	done     bool // the line ended
}

func (l *requestLineCheck) scan(buf []byte) error {
	if l.seen == 0 {
		l.inMethod = true
	}
	for ; !l.done && l.seen < len(buf); l.seen++ {
		b := buf[l.seen]
		switch {
		case b == '\n':
			l.done = true
			return nil
		case b == '\r' && l.seen+1 == len(buf):
			return nil // the line end's first half, or not: look again when more arrives
		case b == '\r' && buf[l.seen+1] == '\n':
			// the line end
		case b < 0x20 || b == 0x7f:
			return errControlInLine
		case l.inMethod && b == ' ':
			if l.seen == 0 {
				return errRequestLineEmpty
			}
			l.inMethod = false
		case l.inMethod && !isTokenByte(b):
			return errMethodNotToken
		}
		if l.seen >= maxRequestLine {
			return errRequestLineLong
		}
	}
	return nil
}

// isTokenByte reports whether b is a tchar of RFC 9110 §5.6.2.
func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// headerEnd returns the length of the header block in buf (through the
// empty line), or -1. Bare LF line ends are accepted, as net/http does.
func headerEnd(buf []byte) int {
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if i := bytes.Index(buf, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return -1
}

func checkHeaderBlock(block []byte) error {
	lines := bytes.Split(bytes.TrimRight(block, "\r\n"), []byte("\n"))
	var contentLengths, transferEncodings int
	var te []byte
	for i, line := range lines[1:] { // lines[0] is the request line
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return fmt.Errorf("header line %d is an obs-fold continuation", i+1)
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fmt.Errorf("header line %d has no colon", i+1)
		}
		if len(name) == 0 || bytes.ContainsAny(name[len(name)-1:], " \t") {
			return fmt.Errorf("header line %d has whitespace before the colon", i+1)
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			contentLengths++
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			transferEncodings++
			te = bytes.TrimSpace(value)
		}
	}
	switch {
	case contentLengths > 0 && transferEncodings > 0:
		return errors.New("both Content-Length and Transfer-Encoding")
	case contentLengths > 1:
		return errors.New("more than one Content-Length")
	case transferEncodings > 1:
		return errors.New("more than one Transfer-Encoding")
	case transferEncodings == 1 && !bytes.EqualFold(te, []byte("chunked")):
		return fmt.Errorf("transfer coding %q is not chunked", te)
	}
	return nil
}
