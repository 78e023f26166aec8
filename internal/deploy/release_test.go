package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRelease runs make release's script for this machine's platform and
// checks what it ships: the tarball's entries (binary, LICENSE, README.md,
// the files of examples/ git tracks and nothing it ignores), each owned by
// 0:0 with a normalized mode and the commit's time; SHA256SUMS; and a binary
// built with -trimpath and the commit's VCS stamp that reports the version.
// A second run under another umask gives the same bytes.
func TestRelease(t *testing.T) {
	root := repoRoot(t)
	dist, bin := release(t)
	commitTime, err := strconv.ParseInt(git(t, "log", "-1", "--format=%ct"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	head := git(t, "rev-parse", "HEAD")
	name := tarballName(platform())
	top := strings.TrimSuffix(name, ".tar.gz")

	// SHA256SUMS lists the tarball with its digest, in sha256sum's format.
	tarball := readFile(t, filepath.Join(dist, name))
	sum := sha256.Sum256(tarball)
	if got, want := string(readFile(t, filepath.Join(dist, "SHA256SUMS"))), hex.EncodeToString(sum[:])+"  "+name+"\n"; got != want {
		t.Errorf("SHA256SUMS = %q, want %q", got, want)
	}

	// The tarball.
	zr, err := gzip.NewReader(bytes.NewReader(tarball))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header keeps name %q and time %v (gzip -n stores neither)", zr.Name, zr.ModTime)
	}
	var files []string
	tr := tar.NewReader(zr)
	var prev string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name < prev {
			t.Errorf("entries not sorted: %s after %s", h.Name, prev)
		}
		prev = h.Name
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 without names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(time.Unix(commitTime, 0)) {
			t.Errorf("%s: mtime %v, want the commit's %v", h.Name, h.ModTime, time.Unix(commitTime, 0))
		}
		rel, ok := strings.CutPrefix(h.Name, top+"/")
		if !ok && h.Name != top+"/" {
			t.Errorf("%s is outside %s/", h.Name, top)
		}
		switch {
		case h.Typeflag == tar.TypeDir:
			if h.Mode&0o777 != 0o755 {
				t.Errorf("%s: mode %o, want 755", h.Name, h.Mode&0o777)
			}
		case h.Typeflag == tar.TypeReg:
			files = append(files, rel)
			info, err := os.Stat(filepath.Join(root, rel))
			want := int64(0o644)
			if rel == "airlock" || (err == nil && info.Mode()&0o100 != 0) {
				want = 0o755
			}
			if h.Mode&0o777 != want {
				t.Errorf("%s: mode %o, want %o", h.Name, h.Mode&0o777, want)
			}
		default:
			t.Errorf("%s: type %c, want only files and directories", h.Name, h.Typeflag)
		}
	}
	want := append([]string{"LICENSE", "README.md", "airlock"}, strings.Fields(git(t, "ls-files", "--", "examples"))...)
	slices.Sort(want)
	slices.Sort(files)
	if !slices.Equal(files, want) {
		t.Errorf("tarball files:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range files {
		if strings.Contains(f, ".state/") {
			t.Errorf("%s: the demo's state (keys, passwords) must not ship", f)
		}
	}

	// The binary.
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, v := range map[string]string{"-trimpath": "true", "CGO_ENABLED": "1", "vcs.revision": head, "GOOS": runtime.GOOS, "GOARCH": runtime.GOARCH} {
		if settings[k] != v {
			t.Errorf("build setting %s = %q, want %q", k, settings[k], v)
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("airlock version: %v\n%s", err, out)
	}
	if first, _, _ := strings.Cut(string(out), "\n"); first != "airlock "+releaseVersion {
		t.Errorf("airlock version says %q, want airlock %s", first, releaseVersion)
	}
	if !strings.Contains(string(out), "platform: "+platform()) {
		t.Errorf("airlock version does not name the platform:\n%s", out)
	}
	if bytes.Contains(readFile(t, bin), []byte(root)) {
		t.Errorf("the binary holds the path of the work tree %s: -trimpath did not apply", root)
	}
}

// TestReleaseReproducible: the same sources give the same tarball, built in
// another directory under another umask (files copied with mode 600). The
// sources are a snapshot of the work tree (what git tracks or would track),
// copied twice, so that edits made meanwhile do not count; the snapshots are
// not git checkouts, which is make release's path for a source archive.
func TestReleaseReproducible(t *testing.T) {
	root := repoRoot(t)
	epoch := git(t, "log", "-1", "--format=%ct")
	a := filepath.Join(t.TempDir(), "airlock-a")
	b := filepath.Join(t.TempDir(), "elsewhere", "airlock-b")
	for _, f := range strings.Split(git(t, "ls-files", "-z", "--cached", "--others", "--exclude-standard"), "\x00") {
		data, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, os.ErrNotExist) || f == "" {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for dir, perm := range map[string]os.FileMode{a: info.Mode().Perm(), b: info.Mode().Perm() & 0o700} {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, perm); err != nil {
				t.Fatal(err)
			}
		}
	}
	var tarballs [][]byte
	for dir, umask := range map[string]string{a: "022", b: "077"} {
		dist := filepath.Join(dir, "dist")
		if out, err := runRelease(dir, dist, umask, platform(), "SOURCE_DATE_EPOCH="+epoch); err != nil {
			t.Fatalf("make release in %s: %v\n%s", dir, err, out)
		}
		tarballs = append(tarballs, readFile(t, filepath.Join(dist, tarballName(platform()))))
	}
	if !bytes.Equal(tarballs[0], tarballs[1]) {
		t.Errorf("make release of the same sources in two directories gave different tarballs (%d and %d bytes)", len(tarballs[0]), len(tarballs[1]))
	}
}

// TestReleaseNeedsCrossCompiler: a platform whose C cross compiler is
// missing stops make release before anything is built, with what to install.
func TestReleaseNeedsCrossCompiler(t *testing.T) {
	root := repoRoot(t)
	other, triplet, pkg := "linux/arm64", "aarch64-linux-gnu", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
	if runtime.GOARCH == "arm64" {
		other, triplet, pkg = "linux/amd64", "x86_64-linux-gnu", "gcc-x86-64-linux-gnu libc6-dev-amd64-cross"
	}
	// A PATH with what the script needs up to its check, and no cross compiler.
	pathDir := t.TempDir()
	for _, tool := range []string{"go", "git", "dirname"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(pathDir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	dist := filepath.Join(t.TempDir(), "dist")
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, "deploy/release.sh")
	cmd.Dir = root
	cmd.Env = []string{"PATH=" + pathDir, "HOME=" + os.Getenv("HOME"), "GOCACHE=" + goEnv(t, "GOCACHE"),
		"VERSION=" + releaseVersion, "DIST=" + dist, "PLATFORMS=" + platform() + " " + other, "SOURCE_DATE_EPOCH=0"}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("make release for %s without %s-gcc succeeded:\n%s", other, triplet, out)
	}
	want := fmt.Sprintf("make release: %s needs a C cross compiler for pg_query_go (cgo), and %s-gcc was not found: install it (Debian: apt-get install %s), or build this machine's platform only with: make release PLATFORMS=%s\n",
		other, triplet, pkg, platform())
	if string(out) != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if _, err := os.Stat(dist); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("make release made %s before failing (%v)", dist, err)
	}
}

func goEnv(t testing.TB, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
