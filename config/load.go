package config

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Load merges the flags set on fs (fs.Changed), EGRET_<KEY> environment
// variables, the configuration file (--config or EGRET_CONFIG) and the
// defaults, in that order of precedence, into a fresh viper, then decodes
// and validates the result. fs may be nil (no flags).
//
// Errors name where the bad value came from (file:line, --flag or
// EGRET_KEY), the key, the value and the fix, one per line, e.g.
//
//	egret.yaml:12: clients[1].sources[0]: "10.0.1.0/33" is not a CIDR (e.g. 10.0.1.0/24)
//
// Unknown keys in the file are errors; a key missing from it takes its
// default. Product names are not checked: the caller checks them against
// the catalog.
func Load(fs *pflag.FlagSet) (*Config, error) {
	l := &loader{fs: fs, file: configFile(fs)}
	if err := l.read(); err != nil {
		return nil, err
	}
	if len(l.errs) == 0 {
		v, err := l.newViper()
		if err != nil {
			return nil, err
		}
		l.v = v
		l.decode()
	}
	if len(l.errs) > 0 {
		sortErrs(l.errs)
		return nil, &Error{errs: l.errs}
	}
	return l.cfg, nil
}

// Error is Load's validation error: one line per problem, ordered by
// line in the file.
type Error struct{ errs []fieldErr }

func (e *Error) Error() string { return strings.Join(e.Problems(), "\n") }

// Problems returns the problems one by one.
func (e *Error) Problems() []string {
	out := make([]string, len(e.errs))
	for i, fe := range e.errs {
		out[i] = fe.String()
	}
	return out
}

// fieldErr is one problem: where the value came from (file:line, --flag,
// EGRET_KEY), the path of the bad value and what is wrong with it.
type fieldErr struct {
	where string
	line  int
	path  string
	msg   string
}

func (e fieldErr) String() string {
	if e.path == "" {
		return e.where + ": " + e.msg
	}
	return e.where + ": " + e.path + ": " + e.msg
}

type srcKind uint8

const (
	srcDefault srcKind = iota
	srcFile
	srcEnv
	srcFlag
)

// source is where a key's value came from.
type source struct {
	kind srcKind
	name string // the flag or environment variable
}

type loader struct {
	fs   *pflag.FlagSet
	file string
	data []byte
	root *yaml.Node // the file's top mapping, nil if none
	v    *viper.Viper
	cfg  *Config
	errs []fieldErr
}

// configFile is --config if set, else EGRET_CONFIG, else --config's default.
func configFile(fs *pflag.FlagSet) string {
	var f *pflag.Flag
	if fs != nil {
		f = fs.Lookup("config")
	}
	if f != nil && f.Changed {
		return f.Value.String()
	}
	if env := os.Getenv("EGRET_CONFIG"); env != "" {
		return env
	}
	if f != nil {
		return f.Value.String()
	}
	return ""
}

// read reads and parses the file and checks its keys.
func (l *loader) read() error {
	if l.file == "" {
		return nil
	}
	data, err := os.ReadFile(l.file)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	l.data = data
	root, errs := parseYAML(l.file, data)
	l.errs = append(l.errs, errs...)
	if root == nil {
		return nil
	}
	l.root = root
	for _, ke := range checkStructure(root) {
		l.errs = append(l.errs, fieldErr{where: fmt.Sprintf("%s:%d", l.file, ke.line), line: ke.line, path: ke.path.String(), msg: ke.msg})
	}
	return nil
}

// newViper merges the sources in a fresh viper. Every key gets a default
// and an explicit env binding: viper only looks up the environment for
// keys it knows. Changed flags are Set, so that they override the rest.
func (l *loader) newViper() (*viper.Viper, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if l.root != nil {
		if err := v.ReadConfig(bytes.NewReader(l.data)); err != nil {
			return nil, fmt.Errorf("config file %s: %w", l.file, err)
		}
	}
	v.SetEnvPrefix("egret")
	for _, k := range keys {
		if err := v.BindEnv(k.key); err != nil {
			return nil, err
		}
		v.SetDefault(k.key, k.def)
		if f := l.changedFlag(&k); f != nil {
			v.Set(k.key, flagValue(f))
		}
	}
	return v, nil
}

func (l *loader) changedFlag(k *keyDef) *pflag.Flag {
	if l.fs == nil || k.flag == "" {
		return nil
	}
	if f := l.fs.Lookup(k.flag); f != nil && f.Changed {
		return f
	}
	return nil
}

// envName is key's environment variable.
func envName(key string) string { return "EGRET_" + strings.ToUpper(key) }

// source tells where viper takes key's value from, with viper's
// precedence: flag, environment, file, default.
func (l *loader) source(k *keyDef) source {
	if l.changedFlag(k) != nil {
		return source{srcFlag, k.flag}
	}
	if env := envName(k.key); os.Getenv(env) != "" {
		return source{srcEnv, env}
	}
	if !isNull(lookup(l.root, k.key)) {
		return source{srcFile, ""}
	}
	return source{srcDefault, ""}
}

// get returns key's merged value, where it came from and its path. Values
// from the file are taken from the YAML nodes, as written: viper would
// have lower-cased mapping keys and turned `0123` into a number.
func (l *loader) get(key string) (any, source, path) {
	k := keyFor(key)
	src := l.source(k)
	if src.kind == srcFile {
		return toAny(lookup(l.root, key)), src, path{key}
	}
	return l.v.Get(key), src, path{key}
}

// bad records a problem with the value at p, which came from src.
func (l *loader) bad(src source, p path, format string, args ...any) {
	fe := fieldErr{path: p.String(), msg: fmt.Sprintf(format, args...)}
	switch src.kind {
	case srcFile:
		fe.line = lineOf(l.root, p)
		fe.where = fmt.Sprintf("%s:%d", l.file, fe.line)
	case srcFlag:
		fe.where = "--" + src.name
	case srcEnv:
		fe.where = src.name
	default:
		fe.where = "default"
	}
	if src.kind != srcFile && len(p) == 1 {
		fe.path = "" // --listen or EGRET_LISTEN already names the key
	}
	l.errs = append(l.errs, fe)
}

// sortErrs orders problems by line, keeping the order of equal lines.
func sortErrs(errs []fieldErr) {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].line < errs[j].line })
}
