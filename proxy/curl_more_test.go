package proxy

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// curl runs the real curl binary with a clean proxy environment and
// returns its stdout, stderr and exit code.
func runCurl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed")
		}
		t.Skip("curl is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-sS", "--max-time", "10"}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "curl_home", "home":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "HOME="+t.TempDir()) // no ~/.curlrc
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("curl: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed")
		}
		t.Skip("curl is not installed")
	}
	h := newHarness(t, harnessOpts{mutate: func(r *Rules) {
		r.Clients = []Client{connectorClient(t, r)}
		r.AuthOptional = true
	}})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.tlsUp.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	proxy := "http://" + h.addr
	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
		wantLog  map[string]any
	}{
		{
			name:    "https through CONNECT",
			args:    []string{"-x", proxy, "--cacert", ca, "--resolve", fmt.Sprintf("example.com:%d:127.0.0.1", h.tlsPort), fmt.Sprintf("https://example.com:%d/curl", h.tlsPort)},
			wantOut: "tls upstream: GET /curl",
			wantLog: map[string]any{"msg": "decision", "decision": "allow", "method": "CONNECT", "host": "example.com", "port": h.tlsPort, "identity": "default"},
		},
		{
			name:     "denied https",
			args:     []string{"-x", proxy, "https://denied.example/"},
			wantCode: 56, wantErr: "403",
			wantLog: map[string]any{"msg": "decision", "decision": "deny", "reason": "no-rule", "host": "denied.example", "port": 443},
		},
		{
			name:    "plain http",
			args:    []string{"-x", proxy, fmt.Sprintf("http://example.com:%d/x", h.httpPort)},
			wantOut: "http upstream: GET /x ",
			wantLog: map[string]any{"msg": "decision", "decision": "allow", "method": "GET", "path": "/x", "identity": "default"},
		},
		{
			name:    "plain http POST",
			args:    []string{"-x", proxy, "--data-binary", "payload", fmt.Sprintf("http://example.com:%d/post", h.httpPort)},
			wantOut: "http upstream: POST /post payload",
			wantLog: map[string]any{"msg": "decision", "decision": "allow", "method": "POST", "path": "/post"},
		},
		{
			name:    "https with credentials",
			args:    []string{"-U", "connector:secret", "-x", proxy, "--cacert", ca, fmt.Sprintf("https://example.com:%d/auth", h.tlsPort)},
			wantOut: "tls upstream: GET /auth",
			wantLog: map[string]any{"msg": "decision", "decision": "allow", "method": "CONNECT", "identity": "connector"},
		},
		{
			name:    "http with credentials",
			args:    []string{"-U", "connector:secret", "-x", proxy, fmt.Sprintf("http://example.com:%d/auth", h.httpPort)},
			wantOut: "http upstream: GET /auth ",
			wantLog: map[string]any{"msg": "decision", "decision": "allow", "method": "GET", "path": "/auth", "identity": "connector"},
		},
		{
			name:     "https with a wrong password",
			args:     []string{"-U", "connector:nope", "-x", proxy, "--cacert", ca, fmt.Sprintf("https://example.com:%d/wrong", h.tlsPort)},
			wantCode: 56, wantErr: "407",
			wantLog: map[string]any{"msg": "decision", "decision": "deny", "reason": "auth", "method": "CONNECT"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(parseLines(t, h.logBuf.String()))
			out, errOut, code := runCurl(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("curl %v: exit %d, want %d; stdout %q stderr %q", tt.args, code, tt.wantCode, out, errOut)
			}
			if tt.wantOut != "" && out != tt.wantOut {
				t.Errorf("stdout %q, want %q", out, tt.wantOut)
			}
			if tt.wantErr != "" && !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErr)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				lines := parseLines(t, h.logBuf.String())
				if len(lines) > before {
					if got := linesWith(lines[before:], tt.wantLog); len(got) > 0 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no log line %v after line %d:\n%s", tt.wantLog, before, h.logBuf.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			for _, s := range []string{"secret", "nope"} {
				if strings.Contains(h.logBuf.String(), s) {
					t.Errorf("password %q in the log", s)
				}
			}
		})
	}
}
