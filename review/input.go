package review

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// maxLine is the longest line a review reads. Decision lines are a few
// hundred bytes; a longer line is counted as malformed and skipped, so that
// memory stays bounded whatever the input.
const maxLine = 64 << 10

// gzipMagic starts every gzip stream (RFC 1952).
var gzipMagic = []byte{0x1f, 0x8b}

// Read streams one log, plain or gzip (told by its first bytes, not its
// name), into the aggregator. name is used in messages about malformed
// lines. Malformed lines are counted, not errors; an error is a read or
// decompression failure.
func (a *Aggregator) Read(name string, r io.Reader) error { return readLog(name, r, a) }

// lineSink takes the lines of a log: the aggregator of a review, the
// differ of a diff.
type lineSink interface {
	addLine(name string, lineNo int, line []byte)
	malformed(name string, lineNo int, why string)
}

// readLog streams one log, plain or gzip, into s line by line.
func readLog(name string, r io.Reader, s lineSink) error {
	br := bufio.NewReaderSize(r, maxLine)
	if magic, _ := br.Peek(len(gzipMagic)); bytes.Equal(magic, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		inflated := inflateAhead(zr)
		defer inflated.Close() // ends the goroutine if reading stops early
		return readLines(name, bufio.NewReaderSize(inflated, maxLine), s)
	}
	return readLines(name, br, s)
}

// inflateAhead decompresses in its own goroutine, so that inflating the
// next block overlaps with parsing this one (inflating costs about as much
// as parsing). The goroutine ends at the end of the stream or on its
// first error, which the reader gets.
func inflateAhead(zr *gzip.Reader) *io.PipeReader {
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, zr)
		pw.CloseWithError(err)
	}()
	return pr
}

func readLines(name string, br *bufio.Reader, a lineSink) error {
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			a.malformed(name, lineNo, fmt.Sprintf("longer than %d KiB", maxLine>>10))
			if err = skipLine(br); err == nil {
				continue
			}
			line = nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			a.addLine(name, lineNo, line)
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return fmt.Errorf("%s: line %d: %w", name, lineNo, err)
		}
	}
}

// skipLine discards the rest of an over-long line.
func skipLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}
