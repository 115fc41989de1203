package allowlists

import "strings"

// CleanPath returns the canonical form of a URL path for prefix matching:
// the query and fragment dropped, percent-escapes of unreserved characters
// decoded (RFC 3986 §2.3) and other escapes upper-cased, dot segments
// removed (RFC 3986 §5.2.4). It reports false for a path it will not
// canonicalise: one that does not start with '/', holds a malformed escape,
// or an encoded '/' or '\' (which servers disagree about).
func CleanPath(p string) (string, bool) {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	if !strings.ContainsAny(p, "%.") {
		return p, true // the common case: nothing to decode, no dot segments
	}
	decoded, ok := decodeUnreserved(p)
	if !ok {
		return "", false
	}
	return removeDotSegments(decoded), true
}

func decodeUnreserved(p string) (string, bool) {
	if !strings.Contains(p, "%") {
		return p, true
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		hi, ok1 := digitValue(p[i+1])
		lo, ok2 := digitValue(p[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		c := byte(hi<<4 | lo)
		switch {
		case c == '/' || c == '\\':
			return "", false
		case isUnreserved(c):
			b.WriteByte(c)
		default:
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String(), true
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments applies RFC 3986 §5.2.4 to an absolute path.
func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// pathHasPrefix reports whether path lies under prefix at a segment
// boundary: "/maven2" matches "/maven2" and "/maven2/x", not "/maven2x".
func pathHasPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}
