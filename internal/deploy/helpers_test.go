package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// repoRoot is the repository root: the directory of go.mod above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// git runs git in the repository; a tree that is not a git checkout (a
// source tarball) makes the test Unavailable.
func git(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		testenv.Unavailable(t, "a git checkout of airlock", "run the tests in a clone of the repository with git installed", err)
	}
	return strings.TrimSpace(string(out))
}

// releaseVersion is the VERSION the tests give make release.
const releaseVersion = "v0.0.0-deploytest"

var released struct {
	once   sync.Once
	dist   string // the DIST directory of the first run
	binary string // airlock extracted from its tarball
	err    error
	log    string
}

// release runs deploy/release.sh once per test binary for this machine's
// platform, and returns its DIST directory and the airlock binary from the
// tarball (extracted into a directory of its own).
func release(t testing.TB) (dist, binary string) {
	t.Helper()
	root := repoRoot(t)
	git(t, "rev-parse", "HEAD")
	released.once.Do(func() {
		base, err := os.MkdirTemp("", "airlock-deploytest-")
		if err != nil {
			released.err = err
			return
		}
		released.dist = filepath.Join(base, "dist")
		out, err := runRelease(root, released.dist, "022", platform())
		released.log = out
		if err != nil {
			released.err = err
			return
		}
		bin := filepath.Join(base, "bin")
		released.binary, released.err = extractFile(filepath.Join(released.dist, tarballName(platform())), "airlock", bin)
	})
	if released.err != nil {
		t.Fatalf("make release: %v\n%s", released.err, released.log)
	}
	return released.dist, released.binary
}

// runRelease runs deploy/release.sh as make release does, under umask.
func runRelease(root, dist, umask, platforms string, env ...string) (string, error) {
	cmd := exec.Command("bash", "-c", "umask "+umask+" && exec bash deploy/release.sh")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "VERSION="+releaseVersion, "DIST="+dist, "PLATFORMS="+platforms)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

func tarballName(platform string) string {
	return "airlock_" + releaseVersion + "_" + strings.ReplaceAll(platform, "/", "_") + ".tar.gz"
}

// extractFile writes the entry of the tarball whose name (below its top
// directory) is name into dir, and returns its path.
func extractFile(tarball, name, dir string) (string, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			return "", err
		}
		if _, rest, _ := strings.Cut(h.Name, "/"); rest != name {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		path := filepath.Join(dir, filepath.Base(name))
		out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
		if err != nil {
			return "", err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return "", err
		}
		return path, out.Close()
	}
}

// configCheck runs `airlock config check` on a config file with the
// released binary and fails the test with its report unless it says OK.
func configCheck(t *testing.T, config string) {
	t.Helper()
	_, bin := release(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "config", "check", config)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	if err != nil || !strings.Contains(stdout.String(), ": OK") {
		t.Errorf("airlock config check %s: %v\n%s%s", config, err, stdout.String(), stderr.String())
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
