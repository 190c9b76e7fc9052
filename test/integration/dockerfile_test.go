package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction of build stage stage (0 first).
type instruction struct {
	cmd, args string
	stage     int
}

// parseDockerfile splits a Dockerfile into instructions, joining
// continuation lines and dropping comments: enough to check what no
// Docker engine here can build.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	stage := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		cur.Reset()
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd: cmd, args: strings.Join(strings.Fields(args), " "), stage: stage})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDockerfiles(t *testing.T) {
	for _, tc := range []struct {
		path, pkg string
	}{
		{"../../Dockerfile", "./cmd/xds-server"},
		{"compose/fakeservices.Dockerfile", "./test/integration/cmd/fakeservices"},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			ins := parseDockerfile(t, tc.path)
			last := ins[len(ins)-1].stage
			if last < 1 {
				t.Fatalf("%d stage(s): want a builder stage and a runtime stage", last+1)
			}
			var cacheMount, staticBuild, copyFromBuild bool
			var user, entrypoint string
			for _, in := range ins {
				switch {
				case in.cmd == "FROM" && in.stage == 0:
					if !regexp.MustCompile(`^(--platform=\S+ )?golang:1\.26\S* AS build$`).MatchString(in.args) {
						t.Errorf("builder %q: want golang:1.26 AS build", in.args)
					}
				case in.cmd == "FROM" && in.stage == last:
					if !strings.HasPrefix(in.args, "gcr.io/distroless/static") && in.args != "scratch" {
						t.Errorf("runtime image %q: want distroless static or scratch", in.args)
					}
				case in.cmd == "RUN" && in.stage == 0:
					cacheMount = cacheMount || strings.Contains(in.args, "--mount=type=cache,target=/go/pkg/mod")
					staticBuild = staticBuild || (strings.Contains(in.args, "CGO_ENABLED=0") && strings.Contains(in.args, "go build") &&
						strings.Contains(in.args, tc.pkg))
				case in.cmd == "COPY" && in.stage == last:
					copyFromBuild = copyFromBuild || strings.HasPrefix(in.args, "--from=build ")
				case in.cmd == "USER" && in.stage == last:
					user = in.args
				case in.cmd == "ENTRYPOINT" && in.stage == last:
					entrypoint = in.args
				}
			}
			if !cacheMount || !staticBuild || !copyFromBuild {
				t.Errorf("module cache mount %v, CGO_ENABLED=0 go build %s %v, binary copied from the builder %v",
					cacheMount, tc.pkg, staticBuild, copyFromBuild)
			}
			if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
				t.Errorf("USER %q: the runtime stage must run as non-root", user)
			}
			if !strings.HasPrefix(entrypoint, `["/`) {
				t.Errorf("ENTRYPOINT %s: want the exec form (no shell in the image)", entrypoint)
			}
		})
	}
}

// The xds-server image serves ADS and admin on the ports compose
// publishes, admin on every interface.
func TestDockerfileServerPorts(t *testing.T) {
	var expose, env []string
	for _, in := range parseDockerfile(t, "../../Dockerfile") {
		switch in.cmd {
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "ENV":
			env = append(env, strings.Fields(in.args)...)
		}
	}
	if !slices.Contains(expose, "18000") || !slices.Contains(expose, "9090") {
		t.Errorf("EXPOSE %v, want 18000 and 9090", expose)
	}
	if !slices.Contains(env, "EGRESS_XDS_ADMIN_ADDRESS=0.0.0.0:9090") {
		t.Errorf("ENV %v: the admin address must be 0.0.0.0:9090 inside the container", env)
	}
}

// The build context keeps every file the images compile (by Docker's own
// .dockerignore matcher) and leaves out the heavy rest.
func TestDockerignore(t *testing.T) {
	f, err := os.Open("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}}
{{end}}{{end}}{{end}}`, "./cmd/xds-server", "./test/integration/cmd/fakeservices")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, abs := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			t.Fatal(err)
		}
		needed = append(needed, filepath.ToSlash(rel))
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, p := range needed {
		if ex, err := pm.MatchesOrParentMatches(p); err != nil || ex {
			t.Errorf("%s is left out of the build context (%v)", p, err)
		}
	}
	for _, p := range []string{".git/config", "xds-server", "compile.test", "examples/passthrough.yaml", "README.md",
		"internal/server/server_test.go", "internal/translate/testdata/passthrough/in.yaml"} {
		if ex, err := pm.MatchesOrParentMatches(p); err != nil || !ex {
			t.Errorf("%s is in the build context", p)
		}
	}
}
