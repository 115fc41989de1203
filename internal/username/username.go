// Package username says when two proxy usernames are the same user.
//
// NetApp documents a domain user for its Connector's proxy setting as
// `domain%92user`: 92 is the decimal code of `\`, written the way its UI
// wants it, not a percent-encoding (that would be %5C). Whether a Connector
// then sends those three characters, the single byte 0x92 that
// percent-decoding them gives, or a `\`, is not documented. So all of them
// name the same user, and a configured `domain\user` or `domain%92user`
// matches whichever arrives.
package username

import (
	"strings"
	"unicode/utf8"
)

// Key returns the form of name that usernames are compared by: each
// literal "%92", each byte 0x92 that is not part of a UTF-8 character, and
// each U+0092 (what a client that decoded 0x92 into a character sends) is
// a `\`. A name with neither "%92" nor a byte 0x92 is returned as it is,
// without allocating.
func Key(name string) string {
	if !strings.Contains(name, "%92") && strings.IndexByte(name, 0x92) < 0 {
		return name
	}
	name = strings.ReplaceAll(name, "%92", `\`)
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		switch {
		case r == 0x92, r == utf8.RuneError && size == 1 && name[i] == 0x92:
			b.WriteByte('\\')
		default:
			b.WriteString(name[i : i+size])
		}
		i += size
	}
	return b.String()
}
