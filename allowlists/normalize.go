package allowlists

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// MaxNameLen is the longest normalised name accepted (RFC 1035: 253 octets
// without the trailing dot).
const MaxNameLen = 253

// maxLabelLen is the longest label accepted (RFC 1035).
const maxLabelLen = 63

// maxRawHostLen bounds the input before any work is done on it, so that a
// hostile client cannot make the normaliser chew on megabytes.
const maxRawHostLen = 1024

// ErrBadHost is wrapped by every error NormalizeName returns.
var ErrBadHost = errors.New("bad host")

// idnaProfile maps Unicode names to ASCII the way a resolver would (UTS #46
// lookup mapping) but, unlike idna.Lookup, lets '_' through: the documents
// and real services use underscores in labels. idna accepts empty labels and
// invalid UTF-8, so NormalizeName checks those itself.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.StrictDomainName(false))

// NormalizeName returns the canonical form of a host name: lower case, one
// trailing dot removed, IDNA converted to ASCII. The result consists of
// labels of 1–63 letters, digits, '-' and '_', at most 253 bytes in all.
// Anything else (empty labels, NUL, spaces, percent-escapes, invalid UTF-8,
// a bare or undecodable "xn--" label, a name IDNA rejects) is an error
// wrapping ErrBadHost. IP literals are not names: see ParseIPLiteral.
func NormalizeName(raw string) (string, error) {
	if len(raw) > maxRawHostLen {
		return "", fmt.Errorf("%w: name longer than %d bytes", ErrBadHost, maxRawHostLen)
	}
	name := strings.TrimSuffix(raw, ".")
	if !isASCII(name) {
		var err error
		if name, err = toASCII(name); err != nil {
			return "", err
		}
	}
	name = strings.ToLower(name)
	if err := checkName(name); err != nil {
		return "", err
	}
	return name, nil
}

// toASCII converts a name with non-ASCII characters through IDNA. Its ASCII
// characters must already be from the hostname alphabet: IDNA would pass
// '%', ' ' and NUL through untouched.
func toASCII(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: invalid UTF-8", ErrBadHost)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < utf8.RuneSelf && c != '.' && !isNameByte(c) {
			return "", fmt.Errorf("%w: character %q not allowed in a name", ErrBadHost, c)
		}
	}
	ascii, err := idnaProfile.ToASCII(name)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadHost, err)
	}
	return ascii, nil
}

// checkName validates a lower-case ASCII name label by label.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrBadHost)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: name longer than %d bytes", ErrBadHost, MaxNameLen)
	}
	for rest := name; rest != ""; {
		label, tail, _ := strings.Cut(rest, ".")
		if err := checkLabel(label); err != nil {
			return err
		}
		if tail == "" && len(label) != len(rest) {
			return fmt.Errorf("%w: empty label", ErrBadHost) // "a.b." after the one trailing dot
		}
		rest = tail
	}
	return nil
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return fmt.Errorf("%w: empty label", ErrBadHost)
	case len(label) > maxLabelLen:
		return fmt.Errorf("%w: label longer than %d bytes", ErrBadHost, maxLabelLen)
	}
	for i := 0; i < len(label); i++ {
		if !isNameByte(label[i]) {
			return fmt.Errorf("%w: character %q not allowed in a name", ErrBadHost, label[i])
		}
	}
	if strings.HasPrefix(label, "xn--") {
		return checkPunycode(label)
	}
	return nil
}

// checkPunycode accepts an "xn--" label only if it decodes and encodes back
// to itself, so that one name has one spelling in rules and in logs.
func checkPunycode(label string) error {
	if label == "xn--" {
		return fmt.Errorf("%w: bare xn-- label", ErrBadHost)
	}
	uni, err := idnaProfile.ToUnicode(label)
	if err != nil {
		return fmt.Errorf("%w: label %q is not valid punycode", ErrBadHost, label)
	}
	back, err := idnaProfile.ToASCII(uni)
	if err != nil || back != label {
		return fmt.Errorf("%w: label %q is not canonical punycode", ErrBadHost, label)
	}
	return nil
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || 'A' <= c && c <= 'Z'
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
