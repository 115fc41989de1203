package deploy_test

import (
	"context"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads a compose file with compose-go, the library Docker
// Compose itself uses: validated against the Compose schema (an unknown
// or misspelt key fails), with paths resolved and defaults filled in.
func loadCompose(t *testing.T, file string) *types.Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(filepath.Dir(file)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return p
}

func TestComposeSegment(t *testing.T) {
	p := loadCompose(t, "compose/compose.yaml")
	egret, ok := p.Services["egret"]
	if !ok {
		t.Fatal("no service egret")
	}
	workload, ok := p.Services["workload"]
	if !ok {
		t.Fatal("no service workload")
	}

	// The segment has no way out but egret.
	segment, ok := p.Networks["segment"]
	if !ok || !segment.Internal {
		t.Fatal("network segment is not internal: its containers could reach out without egret")
	}
	if nets := slices.Sorted(maps.Keys(workload.Networks)); !slices.Equal(nets, []string{"segment"}) {
		t.Errorf("workload is on %v, want only the internal segment", nets)
	}
	if _, ok := egret.Networks["segment"]; !ok || len(egret.Networks) != 2 {
		t.Errorf("egret is on %v, want the segment and one way out", slices.Sorted(maps.Keys(egret.Networks)))
	}
	for name := range egret.Networks {
		if name != "segment" && p.Networks[name].Internal {
			t.Errorf("egret's other network %s is internal too: egret could not reach out", name)
		}
	}

	// egret: the image from this repository's Dockerfile, unprivileged.
	if egret.Build == nil || egret.Build.Target != "egret" {
		t.Errorf("egret builds %+v, want the Dockerfile's egret stage", egret.Build)
	} else if _, err := os.Stat(filepath.Join(egret.Build.Context, "Dockerfile")); err != nil {
		t.Errorf("egret's build context %s: %v", egret.Build.Context, err)
	}
	if egret.User != "65532:65532" || !egret.ReadOnly || !slices.Equal(egret.CapDrop, []string{"ALL"}) ||
		!slices.Contains(egret.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("egret: user %q read_only %v cap_drop %v security_opt %v, want 65532:65532, true, [ALL], no-new-privileges",
			egret.User, egret.ReadOnly, egret.CapDrop, egret.SecurityOpt)
	}

	// Its policy: the bind-mounted file that --config names.
	cmd := []string(egret.Command)
	i := slices.Index(cmd, "--config")
	if len(cmd) == 0 || cmd[0] != "serve" || i < 0 || i+1 >= len(cmd) {
		t.Fatalf("egret command %q, want serve --config FILE", cmd)
	}
	vi := slices.IndexFunc(egret.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == cmd[i+1] })
	if vi < 0 || !egret.Volumes[vi].ReadOnly {
		t.Fatalf("egret's --config %s is not a read-only mount: %+v", cmd[i+1], egret.Volumes)
	}
	text, err := os.ReadFile(egret.Volumes[vi].Source)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadPolicy(t, egret.Volumes[vi].Source, string(text))

	// The admin port is published on the host's loopback only, the proxy
	// port not at all.
	for _, port := range egret.Ports {
		if int(port.Target) != portOf(t, cfg.Admin) || port.HostIP != "127.0.0.1" {
			t.Errorf("egret publishes %+v: only the admin port %s, on 127.0.0.1", port, cfg.Admin)
		}
	}

	// The workload's proxy is egret's explicit listener.
	for _, v := range []string{"HTTPS_PROXY", "HTTP_PROXY"} {
		val := workload.Environment[v]
		if val == nil {
			t.Errorf("workload: %s is not set", v)
			continue
		}
		u, err := url.Parse(*val)
		if err != nil || u.Hostname() != "egret" || u.Port() == "" || portOf(t, ":"+u.Port()) != portOf(t, cfg.Listen) {
			t.Errorf("workload: %s=%q, want http://egret:%d (egret's listen)", v, *val, portOf(t, cfg.Listen))
		}
	}
	if workload.User == "" || strings.HasPrefix(workload.User, "0") || strings.HasPrefix(workload.User, "root") {
		t.Errorf("workload user %q: run it unprivileged", workload.User)
	}
	if egret.StopGracePeriod == nil || time.Duration(*egret.StopGracePeriod) <= cfg.ShutdownGrace {
		t.Errorf("egret stop_grace_period %v must outlast shutdown_grace %s", egret.StopGracePeriod, cfg.ShutdownGrace)
	}
}

// TestComposeIsValidated makes sure the loader refuses a misspelt key, so
// that TestComposeSegment's load means something.
func TestComposeIsValidated(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	os.WriteFile(file, []byte("services:\n  a:\n    image: x\n    read_onyl: true\n"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opts.LoadProject(ctx); err == nil || !strings.Contains(err.Error(), "read_onyl") {
		t.Fatalf("a misspelt key loaded: %v", err)
	}
}
