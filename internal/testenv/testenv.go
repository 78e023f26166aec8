// Package testenv starts real systems for tests: PostgreSQL, OpenSSH, an OIDC
// provider. A test asks for one and gets it, cleaned up with t.Cleanup.
//
// When a component is missing (a binary not installed), the test is skipped
// locally with a message saying what to install, and fails under CI=true: in
// CI nothing needed may be skipped.
package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run in CI, where a missing component fails.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable stops the test because a component it needs is missing:
// a failure under CI=true, a skip otherwise. how says what to install.
func Unavailable(t testing.TB, component, how string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s is not available (%v); %s", component, err, how)
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// TestBinDirEnv names the directory test servers built from the module
// proxy (Hydra, kube-apiserver, etcd) are cached in.
const TestBinDirEnv = "AIRLOCK_TEST_BIN_DIR"

// TestBinDir is where `make test-deps` puts the test servers it builds:
// $AIRLOCK_TEST_BIN_DIR, else airlock/testbin in the user's cache directory,
// outside the work tree so that a fresh clone on the same machine reuses
// them. Binaries are keyed by the hash of their tools module's go.sum.
func TestBinDir() (string, error) {
	if d := os.Getenv(TestBinDirEnv); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for test binaries (set %s): %w", TestBinDirEnv, err)
	}
	return filepath.Join(cache, "airlock", "testbin"), nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
