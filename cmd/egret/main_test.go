package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// egret runs the command line in-process and returns its exit code and output.
func egret(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"allowed exact name", []string{"check", "--product", "netapp-connector-aws", "api.services.cloud.netapp.com"}, 0,
			[]string{"allow api.services.cloud.netapp.com:443", "reason:   rule", "source:   000_d49fc179dcbbed47.txt", "purpose:  API requests to NetApp Cloud Central", "file:     allowlists/netapp-connector-aws.yaml:"}},
		{"allowed URL with unenforced paths", []string{"check", "--product", "netapp-connector-aws", "repo1.maven.org"}, 0,
			[]string{"allow repo1.maven.org:443", "paths:    unenforced", "/maven2"}},
		{"path outside the prefixes", []string{"check", "--product", "netapp-connector-aws", "https://repo1.maven.org/other"}, 1,
			[]string{"deny repo1.maven.org:443 /other", "reason:   path"}},
		{"denied name", []string{"check", "--product", "netapp-connector-aws", "example.com"}, 1,
			[]string{"deny example.com:443", "reason:   no-rule"}},
		{"suffix trick", []string{"check", "--product", "netapp-connector-aws", "api.services.cloud.netapp.com.evil.com"}, 1,
			[]string{"reason:   no-rule"}},
		{"wrong port", []string{"check", "--product", "netapp-connector-aws", "api.services.cloud.netapp.com:8443"}, 1,
			[]string{"reason:   no-rule"}},
		{"bad host", []string{"check", "--product", "netapp-connector-aws", "api..netapp.com"}, 1,
			[]string{"deny api..netapp.com", "reason:   bad-host", "empty label"}},
		{"unparseable destination", []string{"check", "--product", "netapp-connector-aws", "allowed.com@evil.com"}, 1,
			[]string{"reason:   bad-host"}},
		{"variable in a label", []string{"check", "--product", "netapp-connector-aws", "--var", "region=eu-west-1", "ec2.eu-west-1.amazonaws.com"}, 0,
			[]string{"rule:     ec2.eu-west-1.amazonaws.com:443"}},
		{"variable excludes other regions", []string{"check", "--product", "netapp-connector-aws", "--var", "region=eu-west-1", "ec2.us-east-1.amazonaws.com"}, 1,
			[]string{"reason:   no-rule"}},
		{"inactive rule is reported", []string{"check", "--product", "netapp-connector-local-ui", "10.0.1.5"}, 1,
			[]string{"inactive:", "connector_host"}},
		{"whole-host variable set", []string{"check", "--product", "netapp-connector-local-ui", "--var", "connector_host=10.0.1.5", "http://10.0.1.5/"}, 0,
			[]string{"rule:     10.0.1.5/32:80,443"}},
		{"IP literal in a documented range", []string{"check", "--product", "azure-cassandra-mi", "0x68280001"}, 0,
			[]string{"allow 104.40.0.1:443", "rule:     104.40.0.0/13"}},
		{"pinned name in a documented range", []string{"check", "--product", "azure-cassandra-mi", "--resolve", "fd.example.net=104.40.0.9", "fd.example.net"}, 0,
			[]string{"address:  104.40.0.9 (pinned)", "rule:     104.40.0.0/13"}},
		{"unpinned name is not resolved", []string{"check", "--product", "azure-cassandra-mi", "fd.example.net"}, 1,
			[]string{"reason:   no-rule"}},
		{"extension directory", []string{"check", "--product", "netapp-connector-aws", "--allowlists", "testdata/extra", "artifacts.corp.example"}, 0,
			[]string{"source:   site policy", "file:     testdata/extra/site.yaml:"}},
		{"Cloud Volumes ONTAP reaches no internet", []string{"check", "--product", "netapp-cvo-aws", "example.org:443"}, 1,
			[]string{"deny example.org:443", "reason:   no-rule"}},
		{"HA mediator reaches AWS APIs by name", []string{"check", "--product", "netapp-cvo-aws-ha-mediator", "ec2.us-east-1.amazonaws.com:443"}, 0,
			[]string{"allow ec2.us-east-1.amazonaws.com:443", "rule:     *.amazonaws.com:443", "file:     allowlists/netapp-cvo-aws-ha-mediator.yaml:", "interface VPC endpoint"}},
		{"HA mediator reaches no other internet", []string{"check", "--product", "netapp-cvo-aws-ha-mediator", "example.org:443"}, 1,
			[]string{"reason:   no-rule"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := egret(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			for _, want := range tt.contains {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestCheckUsageErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"no product":      {"check", "example.com"},
		"unknown product": {"check", "--product", "nope", "example.com"},
		"no destination":  {"check", "--product", "netapp-connector-aws"},
		"bad --var":       {"check", "--product", "netapp-connector-aws", "--var", "region", "example.com"},
		"bad --resolve":   {"check", "--product", "netapp-connector-aws", "--resolve", "a.example=not-an-ip", "example.com"},
		"bad var value":   {"check", "--product", "netapp-connector-aws", "--var", "region=a.b", "example.com"},
		"missing dir":     {"check", "--product", "netapp-connector-aws", "--allowlists", "testdata/nope", "example.com"},
		"unknown flag":    {"check", "--prodcut", "netapp-connector-aws", "example.com"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := egret(t, args...)
			if code != 2 || !strings.HasPrefix(errOut, "egret: ") {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit 2 with an egret: message", code, errOut, out)
			}
		})
	}
}

func TestCheckWarnsOnUnusedVariable(t *testing.T) {
	code, _, errOut := egret(t, "check", "--product", "netapp-connector-aws", "--var", "regoin=eu-west-1", "example.com")
	if code != 1 || !strings.Contains(errOut, "warning: variable regoin=eu-west-1 is used by no loaded rule") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestCheckReadsEnvironmentAndConfig(t *testing.T) {
	t.Setenv("EGRET_PRODUCT", "netapp-connector-gcp")
	if code, out, _ := egret(t, "check", "www.googleapis.com"); code != 0 {
		t.Fatalf("EGRET_PRODUCT: exit %d\n%s", code, out)
	}
	cfg := filepath.Join(t.TempDir(), "egret.yaml")
	os.WriteFile(cfg, []byte("product: [azure-cassandra-mi]\nvariables:\n  region: westeurope\ndeny: [packages.microsoft.com]\n"), 0o644)
	t.Setenv("EGRET_PRODUCT", "")
	if code, out, _ := egret(t, "check", "--config", cfg, "vmc-p-westeurope.vault.azure.net"); code != 0 {
		t.Fatalf("config variables: exit %d\n%s", code, out)
	}
	if code, out, _ := egret(t, "check", "--config", cfg, "vmc-p-eastus.vault.azure.net"); code != 1 {
		t.Fatalf("config variables narrow the rule: exit %d\n%s", code, out)
	}
	if code, out, _ := egret(t, "check", "--config", cfg, "packages.microsoft.com"); code != 1 || !strings.Contains(out, "deny-entry") {
		t.Fatalf("config deny entry: exit %d\n%s", code, out)
	}
	// The flag beats the file.
	if code, out, _ := egret(t, "check", "--config", cfg, "--product", "netapp-connector-gcp", "www.googleapis.com"); code != 0 {
		t.Fatalf("flag over file: exit %d\n%s", code, out)
	}
}

func TestProducts(t *testing.T) {
	code, out, _ := egret(t, "products")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 26 {
		t.Fatalf("exit %d, %d lines; want the header and 25 products:\n%s", code, len(lines), out)
	}
	row := regexp.MustCompile(`(?m)^dt-cloud-connector-wildcard +4 +5 +003_16dde71cfa18ae60.txt +Disruptive Technologies`)
	if !row.MatchString(out) {
		t.Errorf("products output lacks the dt-cloud-connector-wildcard row:\n%s", out)
	}
}

func TestLint(t *testing.T) {
	code, out, _ := egret(t, "lint")
	if code != 0 || !strings.Contains(out, "25 files: 0 errors, 0 warnings") {
		t.Fatalf("lint of the embedded files: exit %d\n%s", code, out)
	}
	code, out, _ = egret(t, "lint", "testdata/broad.yaml")
	if code != 1 || !strings.Contains(out, `testdata/broad.yaml:4: error: host "*.com" is a wildcard over the public suffix com`) ||
		!strings.Contains(out, `testdata/broad.yaml:5: warning: host "*.blob.core.windows.net" is a wildcard over blob.core.windows.net`) {
		t.Fatalf("lint of an over-broad file: exit %d\n%s", code, out)
	}
	code, out, _ = egret(t, "lint", "testdata/extra")
	if code != 0 || !strings.Contains(out, "1 files: 0 errors, 0 warnings, 0 inactive rules") {
		t.Fatalf("lint of an extension directory: exit %d\n%s", code, out)
	}
	code, out, _ = egret(t, "lint", "../../allowlists/testdata/bad/port-out-of-range.yaml")
	if code != 1 || !strings.Contains(out, "port-out-of-range.yaml:5: error: proxy rule 1: port 70000 is out of range") {
		t.Fatalf("lint of a broken file: exit %d\n%s", code, out)
	}
}

func TestRememberSuccess(t *testing.T) {
	calls := 0
	check := rememberSuccess(func(pw string) bool { calls++; return pw == "secret" })
	for i, tt := range []struct {
		pw        string
		want      bool
		wantCalls int
	}{
		{"wrong", false, 1}, {"secret", true, 2}, {"secret", true, 2}, {"wrong", false, 3}, {"secret", true, 3},
	} {
		if got := check(tt.pw); got != tt.want || calls != tt.wantCalls {
			t.Errorf("step %d: check(%q) = %v after %d calls; want %v after %d", i, tt.pw, got, calls, tt.want, tt.wantCalls)
		}
	}
}
