package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/tools"
)

// DefaultTimeout bounds a command when neither the limits nor the arguments
// say (the broker always sets one).
const DefaultTimeout = time.Minute

// DefaultMaxBytes caps each stream when the limits do not say.
const DefaultMaxBytes = 1 << 20

// killGrace is how long Run waits, after signalling KILL on timeout, for the
// host to report the exit before it closes the connection regardless.
const killGrace = 2 * time.Second

// pinnedLine is the exec request for every command: whatever the account's
// login shell is (bash, dash, zsh, fish, csh), it reads this line the same
// way — a constant with no backslash, no newline and no quote inside its one
// single-quoted word — and execs bash. That bash reads the command from
// standard input up to a NUL byte and execs a second bash with it as the -c
// script, so the command runs exactly as "bash -c COMMAND" would, under the
// shell its facts were computed for; the rest of standard input is the
// command's own. %s is the resource's shell path (validated: no specials).
const pinnedLine = `exec %[1]s --noprofile --norc -c 'IFS= read -r -d "" c && exec %[1]s --noprofile --norc -c "$c" run_ssh'`

// Command is one remote execution.
type Command struct {
	// Line is the command line, run by bash on the host (see pinnedLine).
	Line string
	// Stdin is fed to the command; empty means an empty stdin (EOF).
	Stdin string
	// Timeout bounds dialing, authenticating and running.
	Timeout time.Duration
	// MaxBytes caps stdout and stderr each. Output past the cap is read and
	// discarded, so the remote command never blocks on a full pipe and its
	// exit code stays meaningful.
	MaxBytes int64
}

// Run connects to the host with cred and runs cmd: no PTY, no agent
// forwarding, no port forwarding, no environment. The remote user is the
// first principal of the certificate. On timeout the remote process gets
// SIGKILL and the connection is closed; the output so far is returned with
// Extra["timed_out"] = true.
func (r *Resource) Run(ctx context.Context, cred *Credential, cmd Command) (*tools.Output, error) {
	if cmd.Timeout <= 0 {
		cmd.Timeout = DefaultTimeout
	}
	if cmd.MaxBytes <= 0 {
		cmd.MaxBytes = DefaultMaxBytes
	}
	started := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, cmd.Timeout)
	defer cancel()

	release, err := r.acquireSession(runCtx)
	if err != nil {
		return nil, err
	}
	defer release()

	client, err := r.dial(runCtx, cred)
	if err != nil {
		if ctx.Err() == nil && runCtx.Err() != nil {
			return nil, fmt.Errorf("resource %s: connecting to %s took longer than the timeout of %s: %w", r.spec.Name, r.spec.Address, cmd.Timeout, tools.ErrBackendUnavailable)
		}
		return nil, err
	}
	defer client.Close()

	session, err := client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("resource %s: opening a session: %v: %w", r.spec.Name, err, tools.ErrBackendUnavailable)
	}
	defer session.Close()

	stdout := &cappedBuffer{max: cmd.MaxBytes}
	stderr := &cappedBuffer{max: cmd.MaxBytes}
	session.Stdout, session.Stderr = stdout, stderr
	session.Stdin = io.MultiReader(strings.NewReader(cmd.Line), strings.NewReader("\x00"), strings.NewReader(cmd.Stdin))
	if err := session.Start(fmt.Sprintf(pinnedLine, r.shell)); err != nil {
		return nil, fmt.Errorf("resource %s: starting the command: %v: %w", r.spec.Name, err, tools.ErrBackendUnavailable)
	}

	done := make(chan error, 1)
	go func() { done <- session.Wait() }()
	var waitErr error
	timedOut := false
	select {
	case waitErr = <-done:
	case <-runCtx.Done():
		timedOut = ctx.Err() == nil
		// Signal the process, then close: closing alone leaves a process
		// that does not read stdin or write output running on the host.
		_ = session.Signal(ssh.SIGKILL)
		select {
		case waitErr = <-done:
		case <-time.After(killGrace):
		}
		_ = session.Close()
		_ = client.Close()
		if !timedOut {
			return nil, fmt.Errorf("resource %s: the call was cancelled; the command was killed: %w", r.spec.Name, ctx.Err())
		}
	}

	out := &tools.Output{
		Streams:  &tools.Streams{Stdout: stdout.String(), Stderr: stderr.String()},
		Duration: time.Since(started),
	}
	var notices []string
	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case timedOut:
		out.Streams.ExitCode = -1
		out.Extra = map[string]any{"timed_out": true}
		notices = append(notices, fmt.Sprintf("the command ran longer than the timeout of %s and was killed", cmd.Timeout))
	case waitErr == nil:
	case errors.As(waitErr, &exitErr):
		out.Streams.ExitCode = exitErr.ExitStatus()
		if sig := exitErr.Signal(); sig != "" {
			notices = append(notices, "the command was killed by signal "+sig)
		}
	case errors.As(waitErr, &missing):
		out.Streams.ExitCode = -1
		notices = append(notices, "the host reported no exit status for the command")
	default:
		return nil, fmt.Errorf("resource %s: the connection broke while the command ran: %v: %w", r.spec.Name, waitErr, tools.ErrBackendUnavailable)
	}
	for _, s := range []struct {
		name string
		buf  *cappedBuffer
	}{{"stdout", stdout}, {"stderr", stderr}} {
		if s.buf.cut() {
			out.Truncated = true
			notices = append(notices, fmt.Sprintf("%s was cut at %d of %d bytes", s.name, s.buf.kept(), s.buf.total))
		}
	}
	if missingShell(out.Streams, r.shell) {
		return nil, fmt.Errorf("resource %s: the host could not start %s, the shell run_ssh runs every command under (so that its facts hold); install bash on the host or set shell: to its path: %w",
			r.spec.Name, r.shell, tools.ErrBackendUnavailable)
	}
	out.Notice = strings.Join(notices, "; ")
	return out, nil
}

// missingShell recognises the login shell's complaint that the pinned bash
// does not exist: exit 126 or 127, nothing on stdout, and the path in stderr.
// The command itself never started then.
func missingShell(s *tools.Streams, shell string) bool {
	return (s.ExitCode == 127 || s.ExitCode == 126) && s.Stdout == "" && strings.Contains(s.Stderr, shell) &&
		strings.Count(s.Stderr, "\n") <= 1
}

// dial connects and authenticates with the certificate, verifying the host
// key as configured.
func (r *Resource) dial(ctx context.Context, cred *Credential) (*ssh.Client, error) {
	principals := cred.Principals()
	if len(principals) == 0 {
		return nil, fmt.Errorf("resource %s: the certificate names no principal to log in as: %w", r.spec.Name, ErrInvalidConfig)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.spec.Address)
	if err != nil {
		return nil, fmt.Errorf("resource %s: connecting to %s: %v: %w", r.spec.Name, r.spec.Address, err, tools.ErrBackendUnavailable)
	}
	// The handshake has no context of its own: closing the connection ends it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var hostErr error
	authTried := false
	config := &ssh.ClientConfig{
		User: principals[0],
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			authTried = true
			return []ssh.Signer{cred.signer}, nil
		})},
		HostKeyCallback:   r.verifier.callback(&hostErr),
		HostKeyAlgorithms: r.verifier.algorithms,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, r.spec.Address, config)
	if err != nil {
		conn.Close()
		switch {
		case hostErr != nil:
			return nil, r.verifier.explain(r.spec.Name, r.spec.Address, hostErr)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("resource %s: ssh handshake with %s: %w", r.spec.Name, r.spec.Address, ctx.Err())
		case authTried:
			return nil, fmt.Errorf("resource %s: %s did not accept the certificate for %s (serial %s); the host's sshd log says why (principal not allowed, expired, CA not in TrustedUserCAKeys): %w",
				r.spec.Name, r.spec.Address, principals[0], cred.Handle(), ErrAuthFailed)
		default:
			return nil, fmt.Errorf("resource %s: ssh handshake with %s: %v: %w", r.spec.Name, r.spec.Address, err, tools.ErrBackendUnavailable)
		}
	}
	// The client registers no channel handlers: forwarded connections and
	// agent channels the host might open are rejected.
	return ssh.NewClient(c, chans, reqs), nil
}

// cappedBuffer keeps the first max bytes written to it and counts the rest.
type cappedBuffer struct {
	mu    sync.Mutex
	buf   []byte
	max   int64
	total int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += int64(len(p))
	if room := b.max - int64(len(b.buf)); room > 0 {
		b.buf = append(b.buf, p[:min(int64(len(p)), room)]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) cut() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total > int64(len(b.buf))
}

func (b *cappedBuffer) kept() int {
	return len(b.String())
}

// String is the kept output; when it was cut, a rune split by the cap is
// dropped.
func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	buf := b.buf
	if b.total > int64(len(buf)) {
		for i := len(buf) - 1; i >= 0 && i >= len(buf)-utf8.UTFMax; i-- {
			if utf8.RuneStart(buf[i]) {
				if !utf8.FullRune(buf[i:]) {
					buf = buf[:i]
				}
				break
			}
		}
	}
	return string(buf)
}
