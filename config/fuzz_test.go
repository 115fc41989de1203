package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// FuzzLoad: no configuration file makes Load panic; a file it refuses is
// refused with problems that each say where (the file and a line, or the
// flag or variable); a file it accepts loads the same way twice. Seeds in
// testdata/fuzz/FuzzLoad include deploy/egret.yaml, every key documented.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"",
		"product: [netapp-connector-aws]\nmode: report\n",
		"clients:\n  - name: c\n    sources: [10.0.1.0/24]\n    products: [x]\n",
		"listen: \":3128\"\nmdoe: report\n",
		"resolve: [\"example.com=127.0.0.1\"]\nallow_range: [10.0.0.0/8]\nmax_conns: 0\n",
		"read_header_timeout: -1s\nmax_header_bytes: 1KiB\n",
		"clients: [{name: a, username: u, password: p, password_env: E, products: [p]}]\n",
		"{{{",
		"dns: \"127.0.0.1:53\"\ndns_upstream: \"[2001:db8::53]:5353\"\ndns_max_ttl: 1s\ndns_deny: nxdomain\nnft_sets: egret\n",
	} {
		f.Add([]byte(s))
	}
	file := filepath.Join(f.TempDir(), "egret.yaml")
	load := func(t *testing.T) (*Config, error) {
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		Flags(fs)
		if err := fs.Parse([]string{"--config", file}); err != nil {
			t.Fatal(err)
		}
		return Load(fs)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := load(t)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				if !strings.Contains(err.Error(), file) {
					t.Fatalf("an error that names no file: %v", err)
				}
				return
			}
			for _, p := range ce.Problems() {
				if !strings.HasPrefix(p, file) && !strings.HasPrefix(p, "--") && !strings.HasPrefix(p, "EGRET_") {
					t.Fatalf("a problem that does not say where: %q", p)
				}
			}
			return
		}
		again, err := load(t)
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("the same file loaded twice: %+v then %+v, %v", cfg, again, err)
		}
	})
}
