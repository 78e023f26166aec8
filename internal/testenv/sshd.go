package testenv

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHDBinary is where Debian's openssh-server installs the daemon.
const SSHDBinary = "/usr/sbin/sshd"

// SSHTestUser is the local account the private sshd lets in; its login shell
// is bash.
const SSHTestUser = "airlock-test"

// sshShellUsers are further accounts the private sshd lets in, one per login
// shell, for tests of what runs when the login shell is not bash.
var sshShellUsers = map[string]string{
	"/bin/dash":    "airlock-test-dash",
	"/usr/bin/zsh": "airlock-test-zsh",
}

// SSHD is a private OpenSSH server started for one test, on 127.0.0.1. It
// trusts one user CA (TrustedUserCAKeys) and presents a host key that is also
// certified by a host CA, so clients can pin either.
type SSHD struct {
	// Address is host:port.
	Address string
	// User is the account certificates must name as a principal.
	User string
	// HostPublicKey is the host key in authorized_keys format.
	HostPublicKey string
	// HostCAPublicKey is the host CA's key in authorized_keys format; the host
	// presents a certificate from it for the principals 127.0.0.1 and localhost.
	HostCAPublicKey string
	// CAPrivateKeyPEM is the user CA's private key, OpenSSH PEM format.
	CAPrivateKeyPEM []byte
	// CASigner signs user certificates with the user CA.
	CASigner ssh.Signer
	// Dir is the server's private directory (config, keys, log).
	Dir string

	logFile string
	cmd     *exec.Cmd
	done    chan struct{}
}

// SSHDOption changes how the private sshd is set up.
type SSHDOption func(*sshdConfig)

type sshdConfig struct {
	authorizedKeys []ssh.PublicKey
	extra          []string
}

// WithAuthorizedKey lets key log in as the test user without a certificate
// (for baselines that compare against a long-lived key).
func WithAuthorizedKey(key ssh.PublicKey) SSHDOption {
	return func(c *sshdConfig) { c.authorizedKeys = append(c.authorizedKeys, key) }
}

// WithSSHDConfig appends lines to sshd_config (e.g. "MaxStartups 100").
func WithSSHDConfig(lines ...string) SSHDOption {
	return func(c *sshdConfig) { c.extra = append(c.extra, lines...) }
}

var sshUserMu sync.Mutex

// OpenSSH starts a private sshd for this test and stops it in t.Cleanup. It
// needs /usr/sbin/sshd and root (to create the test user and to run sshd);
// without them the test is skipped, or fails under CI=true.
func OpenSSH(t testing.TB, opts ...SSHDOption) *SSHD {
	t.Helper()
	var cfg sshdConfig
	for _, o := range opts {
		o(&cfg)
	}
	if !isExecutable(SSHDBinary) {
		Unavailable(t, "OpenSSH server", "install the Debian package openssh-server", fmt.Errorf("%s not found", SSHDBinary))
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "OpenSSH server", "run the tests as root: sshd and the test user need it", errors.New("not root"))
	}
	if err := ensureSSHUser(SSHTestUser); err != nil {
		t.Fatalf("testenv: creating the user %s: %v", SSHTestUser, err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation directory
		t.Fatalf("testenv: %v", err)
	}

	dir := t.TempDir()
	makeTraversable(t, dir) // the test user reads authorized_keys from here
	s := &SSHD{User: SSHTestUser, Dir: dir, logFile: filepath.Join(dir, "sshd.log"), done: make(chan struct{})}

	hostKey, hostPriv := newEd25519Key(t)
	hostCA, _ := newEd25519Key(t)
	userCA, caPriv := newEd25519Key(t)
	s.CASigner = userCA
	s.HostPublicKey = authorizedKey(hostKey.PublicKey())
	s.HostCAPublicKey = authorizedKey(hostCA.PublicKey())
	pemBlock, err := ssh.MarshalPrivateKey(caPriv, "airlock test user CA")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s.CAPrivateKeyPEM = pem.EncodeToMemory(pemBlock)

	hostCert := &ssh.Certificate{
		Key:             hostKey.PublicKey(),
		CertType:        ssh.HostCert,
		KeyId:           "airlock test host",
		ValidPrincipals: []string{"127.0.0.1", "localhost"},
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := hostCert.SignCert(rand.Reader, hostCA); err != nil {
		t.Fatalf("testenv: signing the host certificate: %v", err)
	}
	hostPEM, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	files := map[string][]byte{
		"host_ed25519_key":          pem.EncodeToMemory(hostPEM),
		"host_ed25519_key-cert.pub": ssh.MarshalAuthorizedKey(hostCert),
		"user_ca.pub":               ssh.MarshalAuthorizedKey(userCA.PublicKey()),
	}
	authorized := "none"
	if len(cfg.authorizedKeys) > 0 {
		var b bytes.Buffer
		for _, k := range cfg.authorizedKeys {
			b.Write(ssh.MarshalAuthorizedKey(k))
		}
		files["authorized_keys"] = b.Bytes()
		authorized = filepath.Join(dir, "authorized_keys")
	}
	for name, data := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "_key") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}

	var startErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between FreePort and start
		port := FreePort(t)
		s.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := strings.Join(append([]string{
			"ListenAddress 127.0.0.1",
			"Port " + strconv.Itoa(port),
			"HostKey " + filepath.Join(dir, "host_ed25519_key"),
			"HostCertificate " + filepath.Join(dir, "host_ed25519_key-cert.pub"),
			"PidFile " + filepath.Join(dir, "sshd.pid"),
			"TrustedUserCAKeys " + filepath.Join(dir, "user_ca.pub"),
			"AuthorizedKeysFile " + authorized,
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"UsePAM no",
			"StrictModes no", // the temp dir lives under world-writable /tmp
			"AllowUsers " + SSHTestUser + " " + strings.Join(slices.Sorted(maps.Values(sshShellUsers)), " "),
			"LogLevel VERBOSE", // logs each certificate's key id and serial
			"MaxStartups 200",
			"MaxSessions 50",
		}, cfg.extra...), "\n") + "\n"
		confPath := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		if startErr = s.start(confPath); startErr == nil {
			break
		}
	}
	if startErr != nil {
		t.Fatalf("testenv: starting sshd: %v", startErr)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *SSHD) start(confPath string) error {
	var stderr bytes.Buffer
	s.done = make(chan struct{})
	s.cmd = exec.Command(SSHDBinary, "-D", "-f", confPath, "-E", s.logFile)
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		return err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("sshd exited: %s%s", stderr.String(), s.Log())
		default:
		}
		if conn, err := net.DialTimeout("tcp", s.Address, time.Second); err == nil {
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			banner := make([]byte, 4)
			_, err := conn.Read(banner)
			conn.Close()
			if err == nil && string(banner) == "SSH-" {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("sshd did not answer on %s within 10s: %s", s.Address, s.Log())
}

func (s *SSHD) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Log returns the server's log so far (LogLevel VERBOSE: accepted and refused
// keys and certificates, with key ids and serials).
func (s *SSHD) Log() string {
	data, _ := os.ReadFile(s.logFile)
	return string(data)
}

// Processes lists the command lines of the test user's processes on the host
// (the same machine: it runs ps).
func (s *SSHD) Processes() ([]string, error) {
	out, err := exec.Command("ps", "-U", s.User, "-o", "args=").Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 1 && len(out) == 0 {
			return nil, nil // ps exits 1 when nothing matches
		}
		return nil, fmt.Errorf("ps: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// UserWithShell returns an account the sshd lets in whose login shell is
// shell (/bin/dash or /usr/bin/zsh), creating it if needed. A shell that is
// not installed makes the test unavailable (a failure under CI=true).
func (s *SSHD) UserWithShell(t testing.TB, shell string) string {
	t.Helper()
	name, ok := sshShellUsers[shell]
	if !ok {
		t.Fatalf("testenv: no test account for login shell %s; known: %v", shell, slices.Sorted(maps.Keys(sshShellUsers)))
	}
	if !isExecutable(shell) {
		Unavailable(t, "login shell "+shell, "install the Debian package "+filepath.Base(shell), fmt.Errorf("%s not found", shell))
	}
	if err := ensureUser(name, shell); err != nil {
		t.Fatalf("testenv: creating the user %s: %v", name, err)
	}
	return name
}

// ensureSSHUser creates a local account sshd accepts certificates for: useradd
// leaves the password locked ("!"), and sshd refuses locked accounts even for
// key logins, so the password becomes "*" (no password login possible).
func ensureSSHUser(name string) error { return ensureUser(name, "/bin/bash") }

func ensureUser(name, shell string) error {
	sshUserMu.Lock()
	defer sshUserMu.Unlock()
	if _, err := user.Lookup(name); err != nil {
		out, err := exec.Command("useradd", "-m", "-s", shell, name).CombinedOutput()
		if err != nil {
			if _, lookupErr := user.Lookup(name); lookupErr != nil { // another test process may have won
				return fmt.Errorf("useradd: %v: %s", err, out)
			}
		}
	}
	if out, err := exec.Command("usermod", "-p", "*", "-s", shell, name).CombinedOutput(); err != nil {
		return fmt.Errorf("usermod: %v: %s", err, out)
	}
	return nil
}

func newEd25519Key(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return s, priv
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}
