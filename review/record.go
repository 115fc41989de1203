package review

import (
	"errors"
	"time"

	"github.com/valyala/fastjson"
)

// record is the part of one decision-log line a review uses. Its byte
// slices point into the parser's memory and are valid until the next parse.
type record struct {
	time     time.Time
	msg      []byte
	decision []byte
	identity []byte
	products [][]byte
	host     []byte
	port     int
	path     []byte
	rule     []byte
	product  []byte
	reason   []byte
}

// lineParser parses decision-log lines without allocating per line
// (fastjson reuses its memory), which keeps a review above 500k lines/s.
type lineParser struct {
	p   fastjson.Parser
	rec record
}

var (
	errNotObject = errors.New("not a JSON object")
	errNoMsg     = errors.New(`no "msg" field; not a decision log line`)
	errBadTime   = errors.New(`"time" is missing or not an RFC 3339 time`)
	errBadPort   = errors.New(`"port" is not a number 0-65535`)
)

// parse reads one line. Only decision lines need the other fields; other
// lines (close lines) return with msg set and the rest unset.
func (lp *lineParser) parse(line []byte) (*record, error) {
	v, err := lp.p.ParseBytes(line)
	if err != nil {
		return nil, err
	}
	obj, err := v.Object()
	if err != nil {
		return nil, errNotObject
	}
	r := &lp.rec
	*r = record{products: r.products[:0]}
	var timeText []byte
	var fieldErr error
	obj.Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case "msg":
			r.msg, _ = v.StringBytes()
		case "time":
			timeText, _ = v.StringBytes()
		case "decision":
			r.decision, _ = v.StringBytes()
		case "host":
			r.host, _ = v.StringBytes()
		case "identity":
			r.identity, _ = v.StringBytes()
		case "port":
			if r.port, err = v.Int(); err != nil || r.port < 0 || r.port > 65535 {
				fieldErr = errBadPort
			}
		case "path":
			r.path, _ = v.StringBytes()
		case "rule":
			r.rule, _ = v.StringBytes()
		case "product":
			r.product, _ = v.StringBytes()
		case "reason":
			r.reason, _ = v.StringBytes()
		case "products":
			arr, _ := v.Array()
			for _, p := range arr {
				if b, err := p.StringBytes(); err == nil {
					r.products = append(r.products, b)
				}
			}
		}
	})
	switch {
	case fieldErr != nil:
		return nil, fieldErr
	case r.msg == nil:
		return nil, errNoMsg
	}
	// UnmarshalText parses RFC 3339 from the bytes, without a copy.
	if timeText == nil || r.time.UnmarshalText(timeText) != nil {
		return nil, errBadTime
	}
	return r, nil
}
