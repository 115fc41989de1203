package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// newViper binds cmd's flags to configuration keys and EGRET_ environment
// variables (the key is the flag name with '-' turned to '_') and reads the
// --config file, giving the precedence flag > env > file > default.
func newViper(cmd *cobra.Command) (*viper.Viper, error) {
	v := viper.New()
	v.SetEnvPrefix("egret")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	var bindErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		key := strings.ReplaceAll(f.Name, "-", "_")
		if err := v.BindPFlag(key, f); err != nil && bindErr == nil {
			bindErr = err
		}
	})
	if bindErr != nil {
		return nil, bindErr
	}
	if file := v.GetString("config"); file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, usageError("config %s: %v", file, err)
		}
	}
	return v, nil
}

// policyFlags are the flags every command that decides shares.
func addPolicyFlags(fs *pflag.FlagSet) {
	fs.StringArray("allowlists", nil, "directory of extra allowlist files (adds or extends products; repeatable)")
	fs.StringArray("var", nil, "variable value K=V for the allowlists (repeatable)")
}

// policySettings gathers variables (the config file's `variables:` map,
// then --var, which wins) and deny entries.
func policySettings(v *viper.Viper) (allowlists.Settings, error) {
	s := allowlists.Settings{Vars: map[string]string{}, Deny: v.GetStringSlice("deny")}
	for k, val := range v.GetStringMapString("variables") {
		s.Vars[k] = val
	}
	for _, kv := range v.GetStringSlice("var") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return s, usageError("--var %q: write K=V, e.g. --var region=eu-west-1", kv)
		}
		s.Vars[k] = val
	}
	return s, nil
}

// loadPolicy loads the embedded and --allowlists files and compiles them.
func loadPolicy(cmd *cobra.Command, v *viper.Viper) (*allowlists.Policy, error) {
	cat, err := allowlists.LoadCatalog(v.GetStringSlice("allowlists")...)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	s, err := policySettings(v)
	if err != nil {
		return nil, err
	}
	p, warnings, err := allowlists.Compile(cat, s)
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "egret: warning:", w)
	}
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return p, nil
}

// parsePins parses --resolve HOST=IP entries into normalised name → address.
func parsePins(entries []string) (map[string]netip.Addr, error) {
	pins := map[string]netip.Addr{}
	for _, e := range entries {
		host, ip, ok := strings.Cut(e, "=")
		if !ok {
			return nil, usageError("--resolve %q: write HOST=IP, e.g. --resolve api.example.com=203.0.113.7", e)
		}
		name, err := allowlists.NormalizeName(host)
		if err != nil {
			return nil, usageError("--resolve %q: %v", e, err)
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil || addr.Zone() != "" {
			return nil, usageError("--resolve %q: %q is not an IP address", e, ip)
		}
		pins[name] = addr.Unmap()
	}
	return pins, nil
}
