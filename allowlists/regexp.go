package allowlists

import (
	"regexp"
	"strings"

	"github.com/gobwas/glob/syntax"
)

// patternRegexp writes a compiled pattern as an anchored regular
// expression with egret's meaning: "*." in front is one or more labels,
// any other "*" stays within a label, "?" is one character of a label,
// [..] and {a,b} as in the documents. The tokens come from gobwas/glob's
// own lexer, so the expression reads a pattern exactly as the matcher does.
func patternRegexp(m pattern) string {
	switch m.kind {
	case kindAny:
		return `^.+$`
	case kindExact:
		return "^" + regexp.QuoteMeta(m.text) + "$"
	case kindSuffix:
		return `^([^.]+\.)+` + regexp.QuoteMeta(m.suffix) + "$"
	}
	var b strings.Builder
	b.WriteByte('^')
	text := m.text
	if rest, ok := strings.CutPrefix(text, "*."); ok {
		b.WriteString(`([^.]+\.)+`)
		text = rest
	}
	lx := syntax.NewLexer(text)
	inClass := false
	for tok := lx.Next(); tok.Type != syntax.EOF && tok.Type != syntax.Error; tok = lx.Next() {
		switch tok.Type {
		case syntax.Text:
			if inClass {
				b.WriteString(classSet(tok.Data))
			} else {
				b.WriteString(regexp.QuoteMeta(tok.Data))
			}
		case syntax.Any:
			b.WriteString(`[^.]*`)
		case syntax.Super:
			b.WriteString(`.*`)
		case syntax.Single:
			b.WriteString(`[^.]`)
		case syntax.RangeOpen:
			b.WriteByte('[')
			inClass = true
		case syntax.Not:
			b.WriteByte('^')
		case syntax.RangeLo, syntax.RangeHi:
			b.WriteString(tok.Data)
		case syntax.RangeBetween:
			b.WriteByte('-')
		case syntax.RangeClose:
			b.WriteByte(']')
			inClass = false
		case syntax.TermsOpen:
			b.WriteByte('(')
		case syntax.TermSeparator:
			b.WriteByte('|')
		case syntax.TermsClose:
			b.WriteByte(')')
		}
	}
	b.WriteByte('$')
	return b.String()
}

// classSet writes the characters of a bracket expression so that RE2 and
// POSIX read them alike: no escapes (POSIX has none inside brackets), and a
// '-' last, where both take it literally. Pattern characters are name
// bytes (letters, digits, '-', '_'), so nothing else needs care.
func classSet(s string) string {
	if strings.Contains(s, "-") {
		return strings.ReplaceAll(s, "-", "") + "-"
	}
	return s
}
