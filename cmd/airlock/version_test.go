package main

import (
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

func TestDescribeBuild(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2026-11-30T09:08:07Z"}, {Key: "vcs.modified", Value: modified},
		}
	}
	for _, tc := range []struct {
		name, ldflags string
		info          *debug.BuildInfo
		want          string
	}{
		{"no build info", "dev", nil, "dev"},
		{"ldflags win over everything", "v1.2.3",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.3.1"}, Settings: vcs("true")}, "v1.2.3"},
		{"go install @v0.3.1", "dev",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.3.1"}}, "v0.3.1"},
		{"go build at a tag in a clean checkout", "dev",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.3.1"}, Settings: vcs("false")}, "v0.3.1"},
		{"go build in a clean checkout (Go 1.24+ pseudo-version)", "dev",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130090807-0123456789ab"}, Settings: vcs("false")}, "0123456789ab"},
		{"go build in a dirty checkout", "dev",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130090807-0123456789ab+dirty"}, Settings: vcs("true")}, "0123456789ab-dirty"},
		{"go build at a tag with changes", "dev",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.3.1+dirty"}, Settings: vcs("true")}, "0123456789ab-dirty"},
		{"pseudo-version after a tag", "dev",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.3.2-0.20261130090807-0123456789ab"}, Settings: vcs("false")}, "0123456789ab"},
		{"go build with -buildvcs=false", "dev",
			&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"go install @main (pseudo-version, no VCS info)", "dev",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130090807-0123456789ab"}}, "v0.0.0-20261130090807-0123456789ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := describeBuild(tc.ldflags, tc.info, "go1.99", "plan9/386")
			if b.Version != tc.want {
				t.Errorf("Version = %q, want %q", b.Version, tc.want)
			}
		})
	}

	b := describeBuild("dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")}, "go1.99", "plan9/386")
	want := "airlock 0123456789ab-dirty\n" +
		"  commit:   " + rev + " (modified)\n" +
		"  date:     2026-11-30T09:08:07Z\n" +
		"  go:       go1.26.8\n" +
		"  platform: linux/arm64\n"
	if got := b.String(); got != want {
		t.Errorf("String():\n%s\nwant:\n%s", got, want)
	}
	if got, want := describeBuild("v1.0.0", nil, "go1.99", "plan9/386").String(), "airlock v1.0.0\n  go:       go1.99\n  platform: plan9/386\n"; got != want {
		t.Errorf("String() without build info:\n%s\nwant:\n%s", got, want)
	}
}

// TestVersionOfBuiltBinary builds airlock in this git checkout, once without
// and once with -ldflags "-X main.version=...", and runs `airlock version`:
// without ldflags it names the commit go build embedded (-dirty when the
// tree had changes) and its date; with them, the ldflags version wins.
// -buildvcs=true is explicit: a GOFLAGS=-buildvcs=false in the Go
// environment would otherwise leave the commit out.
func TestVersionOfBuiltBinary(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			testenv.Unavailable(t, "a git checkout of airlock", "run the tests in a clone of the repository with git installed", err)
		}
		return strings.TrimSpace(string(out))
	}
	head := git("rev-parse", "HEAD")
	commitTime, err := time.Parse(time.RFC3339, git("log", "-1", "--format=%cI"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	build := func(name string, args ...string) (string, string) {
		t.Helper()
		bin := filepath.Join(dir, name)
		cmd := exec.Command("go", append(append([]string{"build", "-buildvcs=true"}, args...), "-o", bin, "./cmd/airlock")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("airlock version: %v\n%s", err, out)
		}
		return bin, string(out)
	}

	bin, out := build("airlock-vcs")
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dirty := ""
	modified := false
	for _, s := range info.Settings {
		if s.Key == "vcs.modified" && s.Value == "true" {
			dirty, modified = "-dirty", true
		}
	}
	commitLine := "  commit:   " + head
	if modified {
		commitLine += " (modified)"
	}
	want := "airlock " + head[:12] + dirty + "\n" +
		commitLine + "\n" +
		"  date:     " + commitTime.UTC().Format(time.RFC3339) + "\n" +
		"  go:       " + runtime.Version() + "\n" +
		"  platform: " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if out != want {
		t.Errorf("airlock version built in the checkout:\n%s\nwant:\n%s", out, want)
	}

	_, out = build("airlock-ldflags", "-ldflags", "-X main.version=v9.8.7-test")
	if want := "airlock v9.8.7-test\n" + commitLine + "\n"; !strings.HasPrefix(out, want) {
		t.Errorf("airlock version built with -ldflags:\n%s\nwant it to start with:\n%s", out, want)
	}
	_ = os.Remove(bin)
}
