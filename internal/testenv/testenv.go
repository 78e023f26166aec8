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
