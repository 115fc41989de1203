package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/egret-proxy/egret/allowlists"
	"github.com/egret-proxy/egret/certs"
	"github.com/egret-proxy/egret/config"
	"github.com/egret-proxy/egret/internal/tlsfiles"
	"github.com/egret-proxy/egret/proxy"
	"github.com/spf13/cobra"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "the CA for optional TLS interception of path rules",
		Args:  cobra.NoArgs,
	}
	initCmd := &cobra.Command{
		Use:   "init --dir DIR [--product P]... [--allowlists DIR] [--intercept-host PATTERN]... [--force]",
		Short: "create a CA that can sign only for the hosts of the products' path rules and --intercept-host",
		Args:  cobra.NoArgs,
		RunE:  runCertsInit,
	}
	fs := initCmd.Flags()
	fs.String("dir", "", "directory for ca.pem and ca-key.pem (created with mode 0700)")
	fs.StringArray("product", nil, "product whose rules with paths the CA may sign for (repeatable)")
	fs.StringArray("intercept-host", nil, "name or *.domain the CA may also sign for (repeatable)")
	fs.Bool("force", false, "replace an existing CA (workloads trusting the old one must be given the new ca.pem)")
	addPolicyFlags(fs)
	cmd.AddCommand(initCmd)
	return cmd
}

func runCertsInit(cmd *cobra.Command, _ []string) error {
	v, err := newViper(cmd)
	if err != nil {
		return err
	}
	dir := v.GetString("dir")
	products, hosts := v.GetStringSlice("product"), v.GetStringSlice("intercept_host")
	switch {
	case dir == "":
		return usageError("certs init needs --dir DIR")
	case len(products) == 0 && len(hosts) == 0:
		return usageError("certs init needs --product P (its rules with paths) or --intercept-host PATTERN: the names the CA may sign for")
	}
	policy, err := loadPolicy(cmd, v)
	if err != nil {
		return err
	}
	settings, err := policySettings(v)
	if err != nil {
		return err
	}
	patterns, err := pathRulePatterns(policy.Catalog(), products, settings.Vars, cmd.ErrOrStderr())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, h := range hosts {
		p, err := certs.ParseHostPattern(h)
		if err != nil {
			return usageError("--intercept-host: %v", err)
		}
		patterns = append(patterns, p)
	}
	if len(patterns) == 0 {
		return usageError("nothing to intercept: products %s have no rules with paths, and no --intercept-host was given",
			strings.Join(products, ", "))
	}
	ca, err := certs.Init(dir, patterns, v.GetBool("force"))
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("certs init: %w", err)}
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "wrote %s and %s (key mode 0600), valid until %s\n",
		filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile), ca.Cert.NotAfter.Format(time.DateOnly))
	fmt.Fprintf(out, "the CA can sign only for these names and the names under them: %s\n",
		strings.Join(ca.Cert.PermittedDNSDomains, ", "))
	fmt.Fprintf(out, "workloads must trust %s; serve with --intercept-ca %s\n", filepath.Join(dir, certs.CertFile), dir)
	return nil
}

// pathRulePatterns returns the hosts of the products' rules with paths,
// variables filled in. A cidr rule (or a host variable set to an address)
// is skipped with a warning: the CA never signs for addresses. A host that
// no narrow name constraint can express is an error naming its file and
// line.
func pathRulePatterns(cat *allowlists.Catalog, products []string, vars map[string]string, warn io.Writer) ([]certs.HostPattern, error) {
	var fill []string
	for k, v := range vars {
		fill = append(fill, "${"+k+"}", v)
	}
	substitute := strings.NewReplacer(fill...)
	var patterns []certs.HostPattern
	var errs []error
	for _, name := range products {
		prod := cat.Product(name)
		if prod == nil {
			return nil, fmt.Errorf("unknown product %q; `egret products` lists them", name)
		}
		for _, f := range prod.Files {
			for _, spec := range f.Proxy {
				if len(spec.Paths) == 0 {
					continue
				}
				host := substitute.Replace(spec.Host + spec.CIDR)
				if isAddress(host) {
					fmt.Fprintf(warn, "egret: warning: %s:%d: %s rule %s has paths but names an address; the CA never signs for addresses, so its paths stay unenforced in tunnels\n",
						f.Name, spec.Line, name, host)
					continue
				}
				p, err := certs.ParseHostPattern(host)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s:%d: %s rule with paths: %w", f.Name, spec.Line, name, err))
					continue
				}
				patterns = append(patterns, p)
			}
		}
	}
	return patterns, errors.Join(errs...)
}

func isAddress(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, isIP, _ := allowlists.ParseIPLiteral(s)
	return isIP
}

// buildIntercept loads the interception CA and the upstream roots of a
// configuration (DESIGN §8a); nil when interception is off. Every
// --intercept-host must lie within the CA's constraints.
func buildIntercept(cfg *config.Config) (*proxy.Intercept, error) {
	if cfg.InterceptCA == "" {
		if len(cfg.InterceptHosts) > 0 || cfg.UpstreamCA != "" {
			return nil, errors.New("intercept_host and upstream_ca need intercept_ca (--intercept-ca DIR, made with egret certs init)")
		}
		return nil, nil
	}
	ca, err := certs.LoadCA(cfg.InterceptCA)
	if err != nil {
		return nil, fmt.Errorf("intercept_ca: %w", err)
	}
	minter, err := certs.NewMinter(ca, certs.DefaultCacheSize)
	if err != nil {
		return nil, err
	}
	ic := &proxy.Intercept{Minter: minter}
	for _, h := range cfg.InterceptHosts {
		p, err := certs.ParseHostPattern(h)
		if err != nil {
			return nil, fmt.Errorf("intercept_host: %w", err)
		}
		if !minter.Permits(p.Domain) {
			return nil, fmt.Errorf("intercept_host %q: the CA in %s cannot sign for it (it permits %s); recreate it with egret certs init --intercept-host %s --force",
				h, cfg.InterceptCA, strings.Join(ca.Cert.PermittedDNSDomains, ", "), p)
		}
		ic.Hosts = append(ic.Hosts, p)
	}
	if cfg.UpstreamCA != "" {
		roots, err := tlsfiles.LoadCertPool(cfg.UpstreamCA)
		if err != nil {
			return nil, fmt.Errorf("upstream_ca: %w", err)
		}
		ic.UpstreamRoots = roots
	}
	return ic, nil
}
