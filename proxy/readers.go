package proxy

import (
	"bufio"
	"io"
)

// Request heads are read through a buffer of --max-header-bytes (64 KiB
// by default), since a head must fit in the buffer to be checked before
// net/http parses it. Allocating, and so zeroing, one per connection was
// a tenth of the CPU of a short connection; these buffers are reused
// instead, from a free list whose bound caps the memory it keeps
// (freeReaders × the buffer size) after a burst.
const freeReaders = 256

var readerFreeList = make(chan *bufio.Reader, freeReaders)

// headerReader is one connection's pooled reader of request heads.
type headerReader struct{ br *bufio.Reader }

// newHeaderReader returns a reader of r with a buffer of size bytes.
func newHeaderReader(r io.Reader, size int) *headerReader {
	select {
	case br := <-readerFreeList:
		if br.Size() == size {
			br.Reset(r)
			return &headerReader{br}
		}
		// The limit changed on a reload: let the old size go.
	default:
	}
	return &headerReader{bufio.NewReaderSize(r, size)}
}

// release returns the buffer to the free list; bytes still buffered are
// dropped. It may be called more than once.
func (h *headerReader) release() {
	if h.br == nil {
		return
	}
	h.br.Reset(nil)
	select {
	case readerFreeList <- h.br:
	default: // the list is full: let the collector have it
	}
	h.br = nil
}
