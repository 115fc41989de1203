package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Values reach the decoders as viper or the YAML file hold them: strings
// (scalars as written, flags and environment variables as text), []string
// (list flags), []any and map[string]any (YAML lists and mappings), or nil.

// str decodes a single value.
func (l *loader) str(val any, src source, p path) (string, bool) {
	switch v := val.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case []any, []string:
		l.bad(src, p, "want a single value, not a list")
	case map[string]any:
		l.bad(src, p, "want a single value, not a mapping")
	default:
		return fmt.Sprint(v), true
	}
	return "", false
}

// list decodes a list of strings. A single value in the file is a list of
// one; an environment variable is split on commas and white space.
func (l *loader) list(val any, src source, p path) []string {
	switch v := val.(type) {
	case nil:
		return nil
	case []string:
		return v
	case string:
		if src.kind == srcEnv {
			return splitList(v)
		}
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for i, e := range v {
			if s, ok := l.str(e, src, p.with(i)); ok {
				out = append(out, s)
			}
		}
		return out
	default:
		l.bad(src, p, "want a list (e.g. [a, b])")
		return nil
	}
}

// splitList splits an environment variable's list on commas and white space.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// positiveDuration decodes a duration that must be more than zero.
func (l *loader) positiveDuration(val any, src source, p path) time.Duration {
	s, ok := l.str(val, src, p)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case err != nil:
		l.bad(src, p, "%q is not a duration (e.g. 10s, 5m, 1h30m)", s)
	case d <= 0:
		l.bad(src, p, "%q: must be more than zero (e.g. 10s)", s)
	}
	return d
}

// intRange decodes a whole number in [lo, hi].
func (l *loader) intRange(val any, src source, p path, lo, hi int) int {
	s, ok := l.str(val, src, p)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	switch {
	case err != nil:
		l.bad(src, p, "%q is not a whole number (e.g. 10000)", s)
	case n < lo || n > hi:
		l.bad(src, p, "%q: must be from %d to %d", s, lo, hi)
	}
	return n
}

// sizeRange decodes a byte count in [lo, hi].
func (l *loader) sizeRange(val any, src source, p path, lo, hi int) int {
	s, ok := l.str(val, src, p)
	if !ok {
		return 0
	}
	n, err := parseSize(s)
	switch {
	case err != nil:
		l.bad(src, p, "%q is not a size (e.g. 65536 or 64KiB)", s)
	case n < lo || n > hi:
		l.bad(src, p, "%q: must be from %s to %s", s, formatSize(lo), formatSize(hi))
	}
	return n
}

// boolean decodes true or false.
func (l *loader) boolean(val any, src source, p path) bool {
	s, ok := l.str(val, src, p)
	if !ok || s == "" {
		return false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		l.bad(src, p, "%q is not true or false", s)
	}
	return b
}

// prefixes decodes a list of canonical CIDRs; a bare address is its own
// /32 or /128.
func (l *loader) prefixes(val any, src source, p path) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range l.list(val, src, p) {
		if pfx, ok := l.prefix(s, src, p.with(i)); ok {
			out = append(out, pfx)
		}
	}
	return out
}

func (l *loader) prefix(s string, src source, p path) (netip.Prefix, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		l.bad(src, p, "%q is not a CIDR (e.g. 10.0.1.0/24)", s)
		return pfx, false
	}
	if m := pfx.Masked(); m != pfx {
		l.bad(src, p, "%q has bits set after the prefix length (write %s)", s, m)
		return pfx, false
	}
	return pfx, true
}

// sizeValue is a pflag.Value for byte counts written as 65536 or 64KiB.
type sizeValue int

func (s *sizeValue) String() string { return formatSize(int(*s)) }
func (s *sizeValue) Type() string   { return "size" }
func (s *sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeValue(n)
	return nil
}

var sizeUnits = []struct {
	suffix string
	n      int
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// parseSize reads a byte count: digits, optionally followed by B, KiB,
// MiB or GiB (units in any case).
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range sizeUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.n
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 31)
	if err != nil || int(n) > (1<<31-1)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 65536 or 64KiB)", s)
	}
	return int(n) * mult, nil
}

// formatSize writes n in the largest unit that divides it.
func formatSize(n int) string {
	for _, u := range sizeUnits {
		if n != 0 && n%u.n == 0 && u.n > 1 {
			return fmt.Sprintf("%d%s", n/u.n, u.suffix)
		}
	}
	return strconv.Itoa(n)
}
