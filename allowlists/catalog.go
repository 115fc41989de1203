package allowlists

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed *.yaml
var embedded embed.FS

// Catalog is the set of products loaded from allowlist files: the embedded
// ones plus any from --allowlists directories. It holds rules as written;
// Compile turns it into a Policy for given variable values.
type Catalog struct {
	products map[string]*Product
}

// Product is one product's files merged: the embedded file and any files
// that extend it.
type Product struct {
	Name      string
	Title     string
	Source    string
	Files     []*File
	Variables map[string]Variable
}

// ProxyRules and NetworkRules count the product's rules of each kind.
func (p *Product) ProxyRules() (n int) {
	for _, f := range p.Files {
		n += len(f.Proxy)
	}
	return n
}

// NetworkRules counts the product's network rules.
func (p *Product) NetworkRules() (n int) {
	for _, f := range p.Files {
		n += len(f.Network)
	}
	return n
}

// EmbeddedFiles parses the allowlists compiled into the binary; their names
// are given as in the source tree (allowlists/<product>.yaml).
func EmbeddedFiles() ([]*File, error) {
	return parseFS(embedded, ".", "allowlists")
}

// DirFiles parses every *.yaml and *.yml file in dir (not recursive).
func DirFiles(dir string) ([]*File, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("allowlists directory: %w", err)
	}
	return parseFS(os.DirFS(dir), ".", dir)
}

// ReadFile parses one allowlist file from disk.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseFile(path, data)
}

func parseFS(fsys fs.FS, dir, prefix string) ([]*File, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var files []*File
	var errs []error
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		data, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f, err := ParseFile(filepath.Join(prefix, e.Name()), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, f)
	}
	return files, errors.Join(errs...)
}

// LoadCatalog loads the embedded allowlists and then each directory's files,
// which may extend embedded products or add new ones.
func LoadCatalog(dirs ...string) (*Catalog, error) {
	files, err := EmbeddedFiles()
	if err != nil {
		return nil, fmt.Errorf("embedded allowlists: %w", err)
	}
	for _, d := range dirs {
		more, err := DirFiles(d)
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	return NewCatalog(files...)
}

// NewCatalog merges files by product, in order: the first file of a product
// gives its title and source, later ones add rules and variables. Every
// variable a rule uses must be declared by a file of the same product.
func NewCatalog(files ...*File) (*Catalog, error) {
	c := &Catalog{products: map[string]*Product{}}
	for _, f := range files {
		p := c.products[f.Product]
		if p == nil {
			p = &Product{Name: f.Product, Title: f.Title, Source: f.Source, Variables: map[string]Variable{}}
			c.products[f.Product] = p
		}
		p.Files = append(p.Files, f)
		for name, v := range f.Variables {
			p.Variables[name] = v
		}
	}
	var errs []error
	for _, name := range c.Names() {
		errs = append(errs, c.products[name].checkVariables()...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func (p *Product) checkVariables() []error {
	var errs []error
	check := func(f *File, line int, s string) {
		for _, name := range variableRefs(s) {
			if _, ok := p.Variables[name]; !ok {
				errs = append(errs, &FileError{File: f.Name, Line: line, Msg: fmt.Sprintf(
					"variable %q is not declared; add it under `variables:` with a description (declared: %s)",
					name, strings.Join(p.variableNames(), ", "))})
			}
		}
	}
	for _, f := range p.Files {
		for _, r := range f.Proxy {
			check(f, r.Line, r.Host+r.CIDR)
		}
		for _, r := range f.Network {
			check(f, r.Line, r.Destination)
		}
	}
	return errs
}

func (p *Product) variableNames() []string {
	names := make([]string, 0, len(p.Variables))
	for n := range p.Variables {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

// Names returns the product names, sorted.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.products))
	for n := range c.products {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Product returns the named product, or nil.
func (c *Catalog) Product(name string) *Product { return c.products[name] }

// usesVariable reports whether any rule of any product references name.
func (c *Catalog) usesVariable(name string) bool {
	ref := "${" + name + "}"
	for _, p := range c.products {
		for _, f := range p.Files {
			for _, r := range f.Proxy {
				if strings.Contains(r.Host+r.CIDR, ref) {
					return true
				}
			}
			for _, r := range f.Network {
				if strings.Contains(r.Destination, ref) {
					return true
				}
			}
		}
	}
	return false
}
