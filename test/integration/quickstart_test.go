package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// The README's laptop quick start, between these markers, is run as
// written (TestReadmeLaptopQuickStart).
const (
	quickStartBegin = "<!-- laptop-quickstart -->"
	quickStartEnd   = "<!-- /laptop-quickstart -->"
)

// quickStart is the quick start as the README says it.
type quickStart struct {
	background []string   // sh blocks: one long-running command a line
	commands   []shellRun // console blocks: `$ command` and its output
	accessLogs []logEntry // json blocks: access log lines, abridged
}

type shellRun struct{ command, output string }

// parseQuickStart reads the fenced blocks between the markers.
func parseQuickStart(readme string) (quickStart, error) {
	_, rest, ok := strings.Cut(readme, quickStartBegin)
	section, _, ok2 := strings.Cut(rest, quickStartEnd)
	if !ok || !ok2 {
		return quickStart{}, fmt.Errorf("README.md has no %s ... %s section", quickStartBegin, quickStartEnd)
	}
	var qs quickStart
	lang := ""
	var block []string
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := sc.Text()
		if fence, ok := strings.CutPrefix(line, "```"); ok {
			if lang == "" {
				if lang = fence; lang == "" {
					return quickStart{}, errors.New("a block of the quick start names no language")
				}
				block = nil
				continue
			}
			if err := qs.add(lang, block); err != nil {
				return quickStart{}, err
			}
			lang = ""
			continue
		}
		if lang != "" {
			block = append(block, line)
		}
	}
	if len(qs.background) == 0 || len(qs.commands) == 0 || len(qs.accessLogs) == 0 {
		return quickStart{}, fmt.Errorf("the quick start lacks commands, checks or access logs: %+v", qs)
	}
	return qs, nil
}

func (qs *quickStart) add(lang string, lines []string) error {
	switch lang {
	case "sh":
		for _, l := range lines {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				qs.background = append(qs.background, l)
			}
		}
	case "console":
		for _, l := range lines {
			if cmd, ok := strings.CutPrefix(l, "$ "); ok {
				qs.commands = append(qs.commands, shellRun{command: cmd})
			} else if len(qs.commands) > 0 {
				last := &qs.commands[len(qs.commands)-1]
				last.output += l + "\n"
			}
		}
	case "json":
		for _, l := range lines {
			var e logEntry
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				return fmt.Errorf("access log line %q: %w", l, err)
			}
			qs.accessLogs = append(qs.accessLogs, e)
		}
	default:
		return fmt.Errorf("quick start block of language %q: only sh, console and json are run", lang)
	}
	return nil
}

// quickStartPorts are the fixed ports the quick start's commands use.
var quickStartPorts = []int{18000, 9090, 9901, 3128, 10080, 10443, 15432, 18080}

// The README's laptop quick start is true: its commands, run as written
// from the repository root (the server with go run, the gateway from the
// Envoy envoytest finds, named envoy on PATH, python3's web server), give
// the outputs and access log lines it shows, and the gateway is SYNCED.
// The one difference: the server's state folder is a temporary one
// (EGRESS_XDS_STATE_DIR; the command line does not set --state-dir), so
// the test leaves nothing in the tree.
func TestReadmeLaptopQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	qs, err := parseQuickStart(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	bin := envoytest.Find(t)
	for _, tool := range []string{"go", "python3", "curl", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			envoytest.Missing(t, "the quick start needs "+tool)
		}
	}
	for _, p := range quickStartPorts {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			envoytest.Missing(t, fmt.Sprintf("port %d, which the quick start uses, is taken: %v", p, err))
		}
		l.Close()
	}
	pathDir := t.TempDir()
	if err := os.Symlink(bin.Path, filepath.Join(pathDir, "envoy")); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+pathDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"EGRESS_XDS_STATE_DIR="+filepath.Join(t.TempDir(), "state"))
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var gatewayOut *syncBuffer
	var procs []*background
	for _, c := range qs.background {
		p := startBackground(t, root, env, c)
		procs = append(procs, p)
		if strings.HasPrefix(c, "envoy ") {
			gatewayOut = p.out
		}
	}
	// A command that ends (a port taken, a bad flag) fails the test at once.
	alive := func() error {
		for _, p := range procs {
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited:\n%s", p.command, tail(p.out.String(), 20))
			default:
			}
		}
		return nil
	}
	if gatewayOut == nil {
		t.Fatal("the quick start starts no envoy")
	}
	// The first command waits for go run to build the server and for the
	// gateway to get its configuration; the others answer at once.
	wait := 5 * time.Minute
	for _, c := range qs.commands {
		err := retryUnlessStopped(wait, func() error {
			if err := alive(); err != nil {
				return errStop{err}
			}
			got, err := runShell(root, env, c.command)
			if err == nil && got != c.output {
				err = fmt.Errorf("output %q, the README says %q", got, c.output)
			}
			return err
		})
		if err != nil {
			t.Fatalf("$ %s: %v", c.command, err)
		}
		wait = waitTimeout
	}
	for _, want := range qs.accessLogs {
		err := retry(waitTimeout, func() error {
			for _, line := range strings.Split(gatewayOut.String(), "\n") {
				var e logEntry
				if json.Unmarshal([]byte(line), &e) == nil && contains(e, want) {
					return nil
				}
			}
			return errors.New("no such line")
		})
		if err != nil {
			t.Errorf("the gateway's access log has no line with %v:\n%s", want, tail(gatewayOut.String(), 10))
		}
	}
	checkLaptopSynced(t, root, env)
}

// errStop ends retryUnlessStopped at once.
type errStop struct{ error }

// retryUnlessStopped is retry, ended early by an errStop.
func retryUnlessStopped(timeout time.Duration, f func() error) error {
	var stopped error
	err := retry(timeout, func() error {
		err := f()
		var stop errStop
		if errors.As(err, &stop) {
			stopped = stop.error
			return nil
		}
		return err
	})
	if stopped != nil {
		return stopped
	}
	return err
}

// contains reports whether e has every field of want, equal.
func contains(e, want logEntry) bool {
	for k, v := range want {
		if !reflect.DeepEqual(e[k], v) {
			return false
		}
	}
	return true
}

// checkLaptopSynced: the server, asked as the README says, has the laptop
// gateway SYNCED on every type (every example accepted by Envoy).
func checkLaptopSynced(t *testing.T, root string, env []string) {
	t.Helper()
	err := retry(waitTimeout, func() error {
		out, err := runShell(root, env, "curl -s 127.0.0.1:9090/debug/status?node=laptop")
		if err != nil {
			return err
		}
		var st []xds.ProxyStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if len(st) != 1 {
			return fmt.Errorf("%d proxies named laptop", len(st))
		}
		for typ, s := range st[0].Types {
			if s.State != xds.Synced {
				return fmt.Errorf("%s is %s: %+v", typ, s.State, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// runShell runs one command line with bash and returns its output.
func runShell(dir string, env []string, command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, out)
	}
	return string(out), nil
}

// background is a long-running command of the quick start.
type background struct {
	command string
	out     *syncBuffer
	exited  chan struct{}
}

// startBackground runs a command line until the test ends, in a process
// group of its own (go run's child included), stopped with SIGTERM.
func startBackground(t *testing.T, dir string, env []string, command string) *background {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command("bash", "-c", "exec "+command)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("%s:\n%s", command, tail(out.String(), 30))
		}
	})
	return &background{command: command, out: out, exited: exited}
}
