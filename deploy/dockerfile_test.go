package deploy_test

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// The Dockerfile is checked by BuildKit's own parser and linter: the
// stages, a static build, the distroless nonroot base and a numeric user.
// deploy/image_test.go builds and runs the image with podman.

func parseDockerfile(t *testing.T) []instructions.Stage {
	stages, _ := parseDockerfileArgs(t)
	return stages
}

// parseDockerfileArgs also returns the ARGs before the first FROM, with
// their defaults.
func parseDockerfileArgs(t *testing.T) ([]instructions.Stage, map[string]string) {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, desc, _, msg string, loc []parser.Range) {
		t.Errorf("Dockerfile: lint %s at %v: %s", rule, loc, msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	args := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				args[kv.Key] = *kv.Value
			}
		}
	}
	return stages, args
}

func stage(t *testing.T, stages []instructions.Stage, name string) *instructions.Stage {
	t.Helper()
	i := slices.IndexFunc(stages, func(s instructions.Stage) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("Dockerfile has no stage %q", name)
	}
	return &stages[i]
}

// commands returns the stage's commands of type T.
func commands[T instructions.Command](s *instructions.Stage) []T {
	var out []T
	for _, c := range s.Commands {
		if tc, ok := c.(T); ok {
			out = append(out, tc)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	stages, args := parseDockerfileArgs(t)

	build := stage(t, stages, "build")
	if !strings.HasPrefix(build.BaseName, "golang:") {
		t.Errorf("build stage FROM %s, want golang:<version>", build.BaseName)
	}
	cgoOff := slices.ContainsFunc(commands[*instructions.EnvCommand](build), func(e *instructions.EnvCommand) bool {
		return slices.ContainsFunc(e.Env, func(kv instructions.KeyValuePair) bool { return kv.Key == "CGO_ENABLED" && kv.Value == "0" })
	})
	if !cgoOff {
		t.Error("build stage does not set ENV CGO_ENABLED=0: the binary would not be static")
	}
	goBuild := slices.ContainsFunc(commands[*instructions.RunCommand](build), func(r *instructions.RunCommand) bool {
		line := strings.Join(r.CmdLine, " ")
		return strings.Contains(line, "go build") && strings.Contains(line, "-o /out/egret") && strings.Contains(line, "./cmd/egret")
	})
	if !goBuild {
		t.Error("build stage has no RUN go build -o /out/egret ./cmd/egret")
	}

	// The proxy's base and its binary's stage are build arguments, so that
	// deploy/image_test.go can build on scratch from `make build`; their
	// defaults are distroless and the build stage.
	final := &stages[len(stages)-1]
	if final.BaseName != "${BASE}" || args["BASE"] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage FROM %s with BASE=%q, want ${BASE} defaulting to gcr.io/distroless/static-debian12:nonroot", final.BaseName, args["BASE"])
	}
	if binary := stage(t, stages, "binary"); binary.BaseName != "${BINARY}" || args["BINARY"] != "build" {
		t.Errorf("binary stage FROM %s with BINARY=%q, want ${BINARY} defaulting to build", binary.BaseName, args["BINARY"])
	}
	users := commands[*instructions.UserCommand](final)
	if len(users) == 0 {
		t.Fatal("final stage has no USER")
	}
	uid, _, _ := strings.Cut(users[len(users)-1].User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n != egretUID {
		t.Errorf("final USER %q: want the numeric uid %d, so that runAsNonRoot can be checked", users[len(users)-1].User, egretUID)
	}
	copied := slices.ContainsFunc(commands[*instructions.CopyCommand](final), func(c *instructions.CopyCommand) bool {
		return c.From == "binary" && slices.Equal(c.SourcePaths, []string{"/out/egret"}) && c.DestPath == "/usr/local/bin/egret"
	})
	if !copied {
		t.Error("final stage does not COPY --from=binary /out/egret /usr/local/bin/egret")
	}
	if len(commands[*instructions.RunCommand](final)) != 0 {
		t.Error("final stage has a RUN: distroless has no shell")
	}
	entry := commands[*instructions.EntrypointCommand](final)
	if len(entry) != 1 || !slices.Equal(entry[0].CmdLine, []string{"/usr/local/bin/egret"}) || entry[0].PrependShell {
		t.Errorf("final ENTRYPOINT: want [\"/usr/local/bin/egret\"] in exec form")
	}
	cmd := commands[*instructions.CmdCommand](final)
	if len(cmd) != 1 || !slices.Equal(cmd[0].CmdLine, []string{"serve", "--admin", ":9090"}) {
		t.Errorf("final CMD: want [serve --admin :9090] (probes must reach the admin port)")
	}
}

// TestDockerfileRedirectStage checks the init container image the sidecar
// uses: the redirect scripts, and egret-iptables as its entrypoint, which
// the sidecar's init container relies on (it sets only args).
func TestDockerfileRedirectStage(t *testing.T) {
	redirect := stage(t, parseDockerfile(t), "redirect")
	var dests []string
	for _, c := range commands[*instructions.CopyCommand](redirect) {
		for _, src := range c.SourcePaths {
			if _, err := os.Stat("../" + src); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
		}
		dests = append(dests, c.DestPath)
	}
	for _, want := range []string{"/usr/local/bin/egret-iptables", "/usr/local/bin/egret-nftables"} {
		if !slices.Contains(dests, want) {
			t.Errorf("redirect stage does not install %s: %v", want, dests)
		}
	}
	entry := commands[*instructions.EntrypointCommand](redirect)
	if len(entry) != 1 || !slices.Equal(entry[0].CmdLine, []string{"/usr/local/bin/egret-iptables"}) {
		t.Error("redirect stage ENTRYPOINT is not [\"/usr/local/bin/egret-iptables\"]")
	}
}
