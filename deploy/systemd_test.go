package deploy_test

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
)

// unitOptions reads a unit file with go-systemd's deserializer into
// "Section.Name" -> values (in order; a directive may repeat).
func unitOptions(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	out := map[string][]string{}
	for _, o := range opts {
		out[o.Section+"."+o.Name] = append(out[o.Section+"."+o.Name], o.Value)
	}
	return out
}

func TestSystemdUnitHardening(t *testing.T) {
	opts := unitOptions(t, "systemd/egret.service")
	want := map[string]string{
		"DynamicUser":             "yes",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
	}
	for name, value := range want {
		got := opts["Service."+name]
		if len(got) != 1 || got[0] != value {
			t.Errorf("%s=%q, want exactly %s=%s", name, got, name, value)
		}
	}
	if filters := opts["Service.SystemCallFilter"]; !slices.Contains(filters, "@system-service") {
		t.Errorf("SystemCallFilter %q lacks @system-service", filters)
	}

	execStart := opts["Service.ExecStart"]
	if len(execStart) != 1 || !strings.HasPrefix(execStart[0], "/usr/local/bin/egret serve --config /etc/egret/egret.yaml") {
		t.Errorf("ExecStart %q, want /usr/local/bin/egret serve --config /etc/egret/egret.yaml", execStart)
	}

	// /etc/egret/egret.yaml is deploy/egret.yaml installed: the stop
	// timeout must outlast its shutdown_grace.
	t.Setenv("EGRET_PW_CONNECTOR", "test")
	text, err := os.ReadFile("egret.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadPolicy(t, "deploy/egret.yaml", string(text))
	stop, err := time.ParseDuration(strings.Join(opts["Service.TimeoutStopSec"], ""))
	if err != nil || stop <= cfg.ShutdownGrace {
		t.Errorf("TimeoutStopSec=%q must be longer than shutdown_grace %s", opts["Service.TimeoutStopSec"], cfg.ShutdownGrace)
	}
}

// TestSystemdTransparentDropIn checks the drop-in for transparent mode on
// a host: the redirect runs with full privileges before egret starts,
// excludes egret's user, and points at the port egret listens on.
func TestSystemdTransparentDropIn(t *testing.T) {
	opts := unitOptions(t, "systemd/egret.service.d/transparent.conf")
	execStart := opts["Service.ExecStart"]
	if len(execStart) != 2 || execStart[0] != "" {
		t.Fatalf("ExecStart %q: want a reset (ExecStart=) and one command", execStart)
	}
	transparent := regexp.MustCompile(`--transparent (\S+)`).FindStringSubmatch(execStart[1])
	if transparent == nil {
		t.Fatalf("ExecStart %q has no --transparent", execStart[1])
	}
	pre := opts["Service.ExecStartPre"]
	if len(pre) != 1 || !strings.HasPrefix(pre[0], "+/usr/local/lib/egret/iptables.sh ") {
		t.Fatalf("ExecStartPre %q: want +/usr/local/lib/egret/iptables.sh (\"+\": root for the redirect only)", pre)
	}
	args := scriptOptions(t, strings.Fields(pre[0])[1:])
	user := unitOptions(t, "systemd/egret.service")["Service.User"]
	if len(user) != 1 || args["--uid"] != user[0] {
		t.Errorf("the redirect excludes --uid %q, but egret runs as User=%q: its own connections would loop", args["--uid"], user)
	}
	if args["--mode"] != "host" || args["command"] != "apply" || args["--port"] != strings.TrimPrefix(transparent[1], ":") {
		t.Errorf("ExecStartPre %q: want --mode host --port <the --transparent port %s> apply", pre[0], transparent[1])
	}
}

// TestSystemdAnalyze runs systemd-analyze: verify (with the drop-in) must
// report nothing but the binaries this machine has not installed, and
// the offline security review must rate the unit's exposure 2.0 or less.
func TestSystemdAnalyze(t *testing.T) {
	requireTools(t, "systemd-analyze")
	out, _ := command("systemd-analyze", "verify", "systemd/egret.service")
	notInstalled := regexp.MustCompile(`^egret\.service: Command /usr/local/(bin/egret|lib/egret/iptables\.sh) is not executable: No such file or directory$`)
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line != "" && !notInstalled.MatchString(line) {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	out, err := command("systemd-analyze", "security", "--offline=true", "--threshold=20", "systemd/egret.service")
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	level := regexp.MustCompile(`Overall exposure level for egret\.service: (\S+)`).FindStringSubmatch(out)
	if err != nil || level == nil {
		t.Fatalf("systemd-analyze security: exposure above 2.0 (or unreadable): %v\n%s", err, out)
	}
	t.Logf("systemd-analyze security: exposure %s", level[1])
}
