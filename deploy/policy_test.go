package deploy_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/config"
	"github.com/spf13/pflag"
)

// loadPolicy validates an egret configuration embedded in a manifest as
// `egret serve --config` would: config.Load (unknown keys, bad values,
// file:line), then the allowlists compiled with its variables and deny
// entries, and every identity's products looked up in the catalog.
func loadPolicy(t *testing.T, where, yamlText string) *config.Config {
	t.Helper()
	cfg, err := tryPolicy(t, yamlText)
	if err != nil {
		t.Fatalf("%s: the embedded egret configuration does not load:\n%v\n--- configuration\n%s", where, err, yamlText)
	}
	return cfg
}

func tryPolicy(t *testing.T, yamlText string) (*config.Config, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "egret.yaml")
	if err := os.WriteFile(file, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.Flags(fs)
	if err := fs.Set("config", file); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(fs)
	if err != nil {
		return nil, err
	}
	cat, err := allowlists.LoadCatalog(cfg.Allowlists...)
	if err != nil {
		return nil, err
	}
	pol, _, err := allowlists.Compile(cat, allowlists.Settings{Vars: cfg.Vars, Deny: cfg.Deny})
	if err != nil {
		return nil, err
	}
	if _, err := pol.Identity("default", cfg.Products...); err != nil {
		return nil, err
	}
	for _, c := range cfg.Clients {
		if _, err := pol.Identity(c.Name, c.Products...); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// TestPolicyCheckIsNotVacuous makes sure loadPolicy would catch what it
// is there to catch, so that the manifest tests mean something.
func TestPolicyCheckIsNotVacuous(t *testing.T) {
	bad := map[string]string{
		"misspelt key":    "transparnet: \":3129\"\n",
		"bad address":     "admin: \"9090\"\n",
		"unknown product": "product: [netapp-connector-mars]\n",
	}
	for name, text := range bad {
		if _, err := tryPolicy(t, text); err == nil {
			t.Errorf("%s: %q loaded without an error", name, text)
		}
	}
}

// portOf returns the port of a listener address such as ":3129".
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}
