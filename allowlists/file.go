package allowlists

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// File is one allowlist file as written: a product's rules and where they
// came from. It is validated on its own by ParseFile; what needs the other
// files of the product (variables declared elsewhere) is checked by Compile.
type File struct {
	Name      string              `yaml:"-"` // path, for messages
	Product   string              `yaml:"product"`
	Title     string              `yaml:"title"`
	Source    string              `yaml:"source"`
	Variables map[string]Variable `yaml:"variables"`
	Proxy     []ProxySpec         `yaml:"proxy"`
	Network   []NetworkRule       `yaml:"network"`
}

// Variable is what a document leaves to the deployment.
type Variable struct {
	Description string `yaml:"description"`
	Line        int    `yaml:"-"`
}

// ProxySpec is a proxy rule as written in a file, before variables are
// substituted. Exactly one of Host and CIDR is set.
type ProxySpec struct {
	Host    string   `yaml:"host"`
	CIDR    string   `yaml:"cidr"`
	Ports   []int    `yaml:"ports"`
	Paths   []string `yaml:"paths"`
	Purpose string   `yaml:"purpose"`
	Broad   string   `yaml:"broad"`
	Source  string   `yaml:"source"`
	Line    int      `yaml:"-"`
}

// NetworkRule is a rule for a packet filter (UDP, ICMP, internal ports, …).
// egret keeps it so that nothing in a document is lost, never to allow.
type NetworkRule struct {
	Protocol    string   `yaml:"protocol"`
	Ports       []string `yaml:"ports"`
	Destination string   `yaml:"destination"`
	Direction   string   `yaml:"direction"`
	Purpose     string   `yaml:"purpose"`
	Source      string   `yaml:"source"`
	// Option names the document's alternative the row belongs to, when the
	// document offers a choice of rule sets: "basic" for the predefined
	// security group that opens all outbound traffic, against which the
	// document's advanced rules are the rigid alternative. egret export
	// leaves such rows out unless asked for the option.
	Option string `yaml:"option"`
	Line   int    `yaml:"-"`
}

// FileError is a problem in an allowlist file, with the place it is at.
type FileError struct {
	File string
	Line int // 0 when the problem is not at one line
	Msg  string
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

var (
	productNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	varRefRE      = regexp.MustCompile(`\$\{([^}]*)\}`)
	varNameRE     = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// ParseFile decodes and validates one allowlist file. Errors are
// *FileError values (joined with errors.Join when there are several), each
// naming the file, the line, the bad value and how to fix it.
func ParseFile(name string, data []byte) (*File, error) {
	f := &File{Name: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FileError{File: name, Msg: "file is empty; it needs at least `product:`"}
		}
		return nil, yamlError(name, err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, &FileError{File: name, Msg: "more than one YAML document; put one product in a file"}
	}
	f.Name = name
	if errs := f.validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// yamlError turns the decoder's "yaml: line 7: …" into "file:7: …".
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, e := range te.Errors {
			errs = append(errs, yamlLineError(name, e))
		}
		return errors.Join(errs...)
	}
	return yamlLineError(name, strings.TrimPrefix(err.Error(), "yaml: "))
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlLineError(name, msg string) error {
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return &FileError{File: name, Msg: msg}
	}
	var line int
	fmt.Sscan(m[1], &line)
	return &FileError{File: name, Line: line, Msg: m[2]}
}

// UnmarshalYAML implements yaml.Unmarshaler: it records the file, refusing
// keys the format does not have.
func (f *File) UnmarshalYAML(n *yaml.Node) error {
	type plain File
	return decodeStrict(n, (*plain)(f), "the file", nil)
}

// UnmarshalYAML records the line and refuses unknown keys.
func (v *Variable) UnmarshalYAML(n *yaml.Node) error {
	type plain Variable
	return decodeStrict(n, (*plain)(v), "a variable", &v.Line)
}

// UnmarshalYAML records the line and refuses unknown keys.
func (r *ProxySpec) UnmarshalYAML(n *yaml.Node) error {
	type plain ProxySpec
	return decodeStrict(n, (*plain)(r), "a proxy rule", &r.Line)
}

// UnmarshalYAML records the line and refuses unknown keys.
func (r *NetworkRule) UnmarshalYAML(n *yaml.Node) error {
	type plain NetworkRule
	return decodeStrict(n, (*plain)(r), "a network rule", &r.Line)
}

// decodeStrict decodes a mapping node into v (a pointer to a struct with
// yaml tags), refusing keys that are not among the tags, and records the
// node's line in *line when line is not nil.
func decodeStrict(n *yaml.Node, v any, what string, line *int) error {
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s must be a mapping of keys to values", n.Line, what)}}
	}
	known := yamlKeys(v)
	var unknown []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !known[k.Value] {
			unknown = append(unknown, fmt.Sprintf("line %d: unknown key %q in %s; the keys are %s",
				k.Line, k.Value, what, strings.Join(sortedKeys(known), ", ")))
		}
	}
	if len(unknown) > 0 {
		return &yaml.TypeError{Errors: unknown}
	}
	if err := n.Decode(v); err != nil {
		return err
	}
	if line != nil {
		*line = n.Line
	}
	return nil
}

func yamlKeys(v any) map[string]bool {
	t := reflect.TypeOf(v).Elem()
	keys := make(map[string]bool, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			keys[tag] = true
		}
	}
	return keys
}

// IsProductName reports whether s is a valid product name: lower-case
// letters, digits and '-', starting with a letter or digit.
func IsProductName(s string) bool { return productNameRE.MatchString(s) }
