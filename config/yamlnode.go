package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// path names a value inside the configuration: key names and list
// indexes, written as clients[1].sources[0].
type path []any

func (p path) String() string {
	var b strings.Builder
	for _, e := range p {
		switch e := e.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", e)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, e)
		}
	}
	return b.String()
}

// with returns p extended by elems, never sharing p's backing array.
func (p path) with(elems ...any) path {
	return append(slices.Clip(p), elems...)
}

// clientKeys are the keys of a `clients` entry.
var clientKeys = []string{"name", "sources", "username", "password", "password_env", "password_bcrypt", "products", "mode", "listener", "cert_subject", "cert_san"}

// variableNameRE is the allowlists' rule for variable names.
var variableNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// yamlLineRE picks the line out of go-yaml's syntax errors.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses a configuration document into its top mapping (nil for
// an empty file). Syntax errors come back as fieldErrs with their line.
func parseYAML(file string, data []byte) (*yaml.Node, []fieldErr) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, []fieldErr{yamlError(file, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, []fieldErr{{where: fmt.Sprintf("%s:%d", file, extra.Line), line: extra.Line,
			msg: "a second YAML document: the configuration is one document (remove the ---)"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, []fieldErr{yamlError(file, data, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, []fieldErr{{where: fmt.Sprintf("%s:%d", file, root.Line), line: root.Line,
			msg: `the configuration must be a mapping of keys to values (e.g. listen: ":3128")`}}
	}
	return root, nil
}

func yamlError(file string, data []byte, err error) fieldErr {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return fieldErr{where: file, msg: strings.TrimPrefix(err.Error(), "yaml: ") + " (YAML syntax)"}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2] + " (YAML syntax)"
	if lines := strings.Split(string(data), "\n"); line >= 1 && line <= len(lines) && strings.Contains(lines[line-1], "\t") {
		msg += "; indent with spaces, not tabs"
	}
	return fieldErr{where: fmt.Sprintf("%s:%d", file, line), line: line, msg: msg}
}

// isNull reports whether n is absent or an explicit null (`key:`, `~`).
func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// deref follows aliases.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// lookup returns the value node of key in mapping m, nil if absent.
func lookup(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// lineOf returns the line of the value at p, or of the deepest enclosing
// value that exists; 0 without a file.
func lineOf(root *yaml.Node, p path) int {
	n := root
	if n == nil {
		return 0
	}
	line := n.Line
	for _, e := range p {
		var next *yaml.Node
		switch e := e.(type) {
		case string:
			next = lookup(n, e)
		case int:
			if s := deref(n); s.Kind == yaml.SequenceNode && e < len(s.Content) {
				next = s.Content[e]
			}
		}
		if next == nil {
			break
		}
		n, line = next, next.Line
	}
	return line
}

// toAny converts n to plain values: scalars stay the text as written
// (go-yaml would read `password: 0123` as the number 83), null is nil.
func toAny(n *yaml.Node) any {
	n = deref(n)
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = deref(n.Content[0])
	}
	switch {
	case isNull(n):
		return nil
	case n.Kind == yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = toAny(n.Content[i+1])
		}
		return m
	case n.Kind == yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, c := range n.Content {
			s[i] = toAny(c)
		}
		return s
	default:
		return n.Value
	}
}

// checkStructure reports duplicate keys anywhere, and keys that are not
// configuration keys at the top, in clients entries and in variables.
func checkStructure(root *yaml.Node) []keyErr {
	var errs []keyErr
	errs = append(errs, checkDuplicates(root, nil)...)
	var known []string
	for _, k := range keys {
		known = append(known, k.key)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch {
		case k.Value == "config":
			errs = append(errs, keyErr{k.Line, path{"config"}, "the file cannot name another configuration file; pass --config or EGRET_CONFIG"})
		case !slices.Contains(known, k.Value):
			errs = append(errs, unknownKey(k, nil, known))
		case k.Value == "clients":
			errs = append(errs, checkClients(v)...)
		case k.Value == "variables":
			errs = append(errs, checkVariables(v)...)
		}
	}
	return errs
}

// keyErr is a problem with a key as written, at the key's line.
type keyErr struct {
	line int
	path path
	msg  string
}

func unknownKey(k *yaml.Node, parent path, known []string) keyErr {
	msg := "unknown key"
	if s := suggest(k.Value, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	} else {
		msg += fmt.Sprintf(" (keys here: %s)", strings.Join(known, ", "))
	}
	return keyErr{k.Line, parent.with(k.Value), msg}
}

func checkClients(n *yaml.Node) []keyErr {
	n = deref(n)
	if isNull(n) || n.Kind != yaml.SequenceNode {
		return nil // decoding reports a value that is not a list
	}
	var errs []keyErr
	for i, c := range n.Content {
		c = deref(c)
		if c.Kind != yaml.MappingNode {
			continue // decoding reports it
		}
		for j := 0; j < len(c.Content); j += 2 {
			if k := c.Content[j]; !slices.Contains(clientKeys, k.Value) {
				errs = append(errs, unknownKey(k, path{"clients", i}, clientKeys))
			}
		}
	}
	return errs
}

func checkVariables(n *yaml.Node) []keyErr {
	n = deref(n)
	if isNull(n) || n.Kind != yaml.MappingNode {
		return nil
	}
	var errs []keyErr
	for j := 0; j < len(n.Content); j += 2 {
		if k := n.Content[j]; !variableNameRE.MatchString(k.Value) {
			errs = append(errs, keyErr{k.Line, path{"variables", k.Value},
				"a variable name is [a-z][a-z0-9_]* (e.g. region, ccm_lb)"})
		}
	}
	return errs
}

// checkDuplicates reports keys written twice in one mapping.
func checkDuplicates(n *yaml.Node, p path) []keyErr {
	var errs []keyErr
	switch n.Kind {
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if first, ok := seen[k.Value]; ok {
				errs = append(errs, keyErr{k.Line, p.with(k.Value), fmt.Sprintf("key written twice (first at line %d); keep one", first)})
			} else {
				seen[k.Value] = k.Line
			}
			errs = append(errs, checkDuplicates(n.Content[i+1], p.with(k.Value))...)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			errs = append(errs, checkDuplicates(c, p.with(i))...)
		}
	}
	return errs
}

// suggest returns the known word closest to w (same after lower-casing
// and turning - into _, or at most two edits away), "" if none is close.
func suggest(w string, known []string) string {
	norm := strings.ReplaceAll(strings.ToLower(w), "-", "_")
	best, bestD := "", 3
	for _, k := range known {
		if k == norm {
			return k
		}
		if d := editDistance(norm, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
