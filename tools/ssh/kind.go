package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/tools"
)

// KindName is the value of `kind:` for SSH hosts.
const KindName = "ssh"

// DefaultMaxSessions is how many run_ssh sessions may be open on one host at
// once when the resource does not say.
const DefaultMaxSessions = 4

// Sentinel errors. Each is wrapped with the resource name and what happened.
var (
	// ErrInvalidConfig means a resource's configuration cannot be used.
	ErrInvalidConfig = errors.New("invalid ssh resource configuration")
	// ErrHostKeyMismatch means the host did not prove the identity the
	// configuration pins; the connection is refused. It wraps
	// tools.ErrRefused.
	ErrHostKeyMismatch = fmt.Errorf("host key verification failed: %w", tools.ErrRefused)
	// ErrAuthFailed means the host did not accept the minted certificate
	// (wrong principal, expired, CA not trusted). sshd's log says why.
	ErrAuthFailed = fmt.Errorf("certificate refused by the host: %w", tools.ErrRefused)
	// ErrSessionsBusy means every session slot of the host stayed taken
	// until the call's timeout.
	ErrSessionsBusy = fmt.Errorf("all sessions busy: %w", tools.ErrBackendUnavailable)
)

// Option configures the kind.
type Option func(*kind)

// WithClock sets the clock certificates are minted with (ValidAfter is a
// minute before it). Tests use it to mint certificates that are already
// expired; the default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(k *kind) { k.now = now }
}

// NewKind returns the resource kind "ssh".
func NewKind(opts ...Option) tools.Kind {
	k := &kind{now: time.Now}
	for _, o := range opts {
		o(k)
	}
	return k
}

type kind struct {
	now func() time.Time
}

var _ tools.Kind = (*kind)(nil)

func (k *kind) Name() string { return KindName }

// Open validates the configuration of an SSH host and loads its user CA key.
// It does not connect.
func (k *kind) Open(spec tools.ResourceSpec, env tools.Environment) (tools.Resource, error) {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("resource %s: %s: %s: %w", spec.Name, key, fmt.Sprintf(format, args...), ErrInvalidConfig)
	}
	if err := rejectForeign(spec, bad); err != nil {
		return nil, err
	}

	host, port, err := net.SplitHostPort(spec.Address)
	if spec.Address == "" {
		return nil, bad("address", "required: the host's host:port, e.g. 10.0.0.5:22")
	}
	if err != nil || host == "" {
		return nil, bad("address", "%q is not host:port, e.g. 10.0.0.5:22", spec.Address)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, bad("address", "port %q is not a number from 1 to 65535", port)
	}

	verifier, err := newHostVerifier(spec, bad)
	if err != nil {
		return nil, err
	}
	ca, err := loadCA(spec, env, bad)
	if err != nil {
		return nil, err
	}

	var sources []string
	for _, s := range spec.SourceAddress {
		if _, _, err := net.ParseCIDR(s); err != nil && net.ParseIP(s) == nil {
			return nil, bad("source_address", "%q is neither an IP address nor a CIDR block (e.g. 10.0.0.0/8)", s)
		}
		sources = append(sources, s)
	}

	maxSessions := spec.MaxSessions
	switch {
	case maxSessions < 0:
		return nil, bad("max_sessions", "%d is negative; use a positive number or leave it out for %d", maxSessions, DefaultMaxSessions)
	case maxSessions == 0:
		maxSessions = DefaultMaxSessions
	}

	shell := spec.Shell
	if shell == "" {
		shell = DefaultShell
	}
	if !validShellPath(shell) {
		return nil, bad("shell", "%q is not the absolute path of bash (e.g. /bin/bash or /usr/local/bin/bash): run_ssh computes facts for bash and runs every command under it", shell)
	}

	if len(spec.Grants) == 0 {
		return nil, bad("grants", "an ssh resource needs at least one grant, e.g. operator: {principals: [ops], ttl: 2m}")
	}
	for _, name := range sortedKeys(spec.Grants) {
		if err := checkGrant(name, spec.Grants[name], bad); err != nil {
			return nil, err
		}
	}

	return &Resource{
		spec:          spec,
		verifier:      verifier,
		ca:            ca,
		sourceAddress: strings.Join(sources, ","),
		sessions:      make(chan struct{}, maxSessions),
		shell:         shell,
		now:           k.now,
	}, nil
}

// DefaultShell is where bash is on the hosts run_ssh talks to unless a
// resource says otherwise (shell:).
const DefaultShell = "/bin/bash"

// validShellPath accepts an absolute path to a program named bash, made of
// characters no shell treats specially (it is sent unquoted to the login
// shell).
func validShellPath(p string) bool {
	if !strings.HasPrefix(p, "/") || path.Base(p) != "bash" {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._+-", c)) {
			return false
		}
	}
	return true
}

// rejectForeign refuses settings that belong to other kinds, naming them.
func rejectForeign(spec tools.ResourceSpec, bad func(key, format string, args ...any) error) error {
	for _, f := range spec.ForeignSettings(KindName) {
		return bad(f.Key, "%s (it is %s)", "not an ssh setting; ssh resources take address, host_key | host_ca | known_hosts_file, ca_key_file | ca_key_env, source_address, max_sessions, shell and grants", f.OwnerPhrase())
	}
	return nil
}

// checkGrant validates one grant: principals and a ttl, nothing of other kinds.
func checkGrant(name string, g tools.Grant, bad func(key, format string, args ...any) error) error {
	key := "grants." + name
	switch {
	case len(g.Roles) > 0:
		return bad(key+".roles", "not an ssh grant setting; ssh grants take principals, ttl and permit_pty")
	case g.Access != "":
		return bad(key+".access", "not an ssh grant setting; ssh grants take principals, ttl and permit_pty")
	case g.ServiceAccount != "":
		return bad(key+".service_account", "not an ssh grant setting; ssh grants take principals, ttl and permit_pty")
	case g.Impersonate != nil:
		return bad(key+".impersonate", "not an ssh grant setting; ssh grants take principals, ttl and permit_pty")
	case len(g.Principals) == 0:
		return bad(key+".principals", "required: the certificate's principals, e.g. [ops]; the first is the remote user")
	case g.TTL <= 0:
		return bad(key+".ttl", "required: how long a certificate lives, e.g. 2m")
	}
	for _, p := range g.Principals {
		if p == "" || strings.ContainsAny(p, ", \t\r\n") {
			return bad(key+".principals", "%q is not a principal: principals are non-empty names without commas or spaces", p)
		}
	}
	return nil
}

// loadCA reads the user CA's private key from a file or an environment
// variable. The key is a secret: errors name where it came from, never what
// it holds.
func loadCA(spec tools.ResourceSpec, env tools.Environment, bad func(key, format string, args ...any) error) (ssh.Signer, error) {
	var (
		pemBytes []byte
		key      string
	)
	switch {
	case spec.CAKeyFile != "" && spec.CAKeyEnv != "":
		return nil, bad("ca_key_file", "set exactly one of ca_key_file and ca_key_env, not both")
	case spec.CAKeyFile != "":
		key = "ca_key_file"
		data, err := env.ReadFile(spec.CAKeyFile)
		if err != nil {
			return nil, bad(key, "cannot read %s: %v", spec.CAKeyFile, pathError(err))
		}
		pemBytes = data
	case spec.CAKeyEnv != "":
		key = "ca_key_env"
		v, ok := env.Getenv(spec.CAKeyEnv)
		if !ok || strings.TrimSpace(v) == "" {
			return nil, bad(key, "the environment variable %s is not set; it must hold the user CA's private key (OpenSSH PEM)", spec.CAKeyEnv)
		}
		pemBytes = []byte(v)
	default:
		return nil, bad("ca_key_file", "required: the user CA's private key, as ca_key_file (a path) or ca_key_env (an environment variable)")
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, bad(key, "the user CA key is encrypted with a passphrase; airlock needs it unencrypted (protect the file or variable instead)")
	case err != nil:
		return nil, bad(key, "not an SSH private key (expected OpenSSH or PEM format, e.g. from ssh-keygen -t ed25519)")
	}
	return signer, nil
}

// pathError strips an *os.PathError down to its cause; the path is already
// in the message.
func pathError(err error) error {
	var pe interface{ Unwrap() error }
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		return pe.Unwrap()
	}
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Resource is one SSH host.
type Resource struct {
	spec          tools.ResourceSpec
	verifier      *hostVerifier
	ca            ssh.Signer
	sourceAddress string
	sessions      chan struct{} // one token per open session
	shell         string        // bash on the host
	now           func() time.Time
}

var _ tools.Resource = (*Resource)(nil)

// Spec returns the resource's configuration.
func (r *Resource) Spec() tools.ResourceSpec { return r.spec }

// Reusable is false: every call gets its own certificate, whose key id is the
// call id.
func (r *Resource) Reusable() bool { return false }

// Revoke does nothing: nothing is created on the host, and the certificate
// expires by itself at ValidBefore.
func (r *Resource) Revoke(context.Context, tools.LeaseRef) error { return nil }

// Orphans returns nil: certificates expire by themselves.
func (r *Resource) Orphans(context.Context) ([]string, error) { return nil, nil }

// Close releases nothing: connections live for one call.
func (r *Resource) Close() {}

// acquireSession takes a session slot, waiting until ctx is done.
func (r *Resource) acquireSession(ctx context.Context) (release func(), err error) {
	select {
	case r.sessions <- struct{}{}:
		return func() { <-r.sessions }, nil
	case <-ctx.Done():
		if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) {
			return nil, fmt.Errorf("resource %s: waiting for a session slot: %w", r.spec.Name, cause)
		}
		return nil, fmt.Errorf("resource %s: %d sessions were already open until the call's time ran out: %w", r.spec.Name, cap(r.sessions), ErrSessionsBusy)
	}
}
