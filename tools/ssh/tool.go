package ssh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// Argument bounds for run_ssh.
const (
	MaxTimeoutSeconds = 3600
	MaxStdinBytes     = 1 << 20
)

// Tools returns the SSH tools: run_ssh.
func Tools() []tools.Tool { return []tools.Tool{&RunSSH{}} }

var _ tools.Tool = (*RunSSH)(nil)

// RunSSH runs one shell command on an SSH host with a certificate minted for
// the call.
type RunSSH struct{}

// RunArgs are run_ssh's decoded arguments.
type RunArgs struct {
	Resource string `json:"resource"`
	Command  string `json:"command"`
	TimeoutS int    `json:"timeout_s,omitempty"`
	Stdin    string `json:"stdin,omitempty"`

	// The command's facts, or why it has none, from the one parse in Decode.
	facts    policy.Shell
	factsErr error
}

var _ tools.Args = (*RunArgs)(nil)

// ResourceName is the host the call targets.
func (a *RunArgs) ResourceName() string { return a.Resource }

// Canonical is the arguments as stable JSON (fields in a fixed order,
// optional ones left out when unset).
func (a *RunArgs) Canonical() json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(a)
	return json.RawMessage(bytes.TrimSpace(b.Bytes()))
}

// Timeout is the timeout the agent asked for, zero when it did not.
func (a *RunArgs) Timeout() time.Duration { return time.Duration(a.TimeoutS) * time.Second }

func (*RunSSH) Name() string   { return "run_ssh" }
func (*RunSSH) Kind() string   { return KindName }
func (*RunSSH) ReadOnly() bool { return false }

func (*RunSSH) Description() string {
	return `Run one shell command on a server over SSH through Airlock and get its exit code, stdout and stderr.
The command runs non-interactively (no terminal, no password prompts) as the remote user Airlock's policy grants, in that user's login shell; write it as you would after "ssh host --", e.g. "systemctl status nginx --no-pager" or "journalctl -u nginx -n 50 --no-pager".
Policy decides whether the command may run by reading it with a shell parser: read-only diagnostics (ls, cat, df, ps, ss, journalctl, systemctl status) are usually allowed, restarts may need a human's approval, and destructive commands (rm -rf, dd, mkfs, piping a download into a shell) are denied; the answer names the rule that decided.
Output is limited in bytes per stream and the command in time: when "truncated" is true, narrow the command (grep, head, tail -n, --since) instead of asking for everything; a command that runs past its timeout is killed.
Sensitive values in the output may come back masked.`
}

func (*RunSSH) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the SSH host, as configured in Airlock (list_resources shows the ones you may use)."},
    "command": {"type": "string", "minLength": 1, "description": "The shell command line to run, e.g. df -h / or journalctl -u nginx -n 100 --no-pager. Pipes and && work; interactive programs do not."},
    "timeout_s": {"type": "integer", "minimum": 1, "maximum": 3600, "description": "Kill the command after this many seconds (the broker's own limit may be lower)."},
    "stdin": {"type": "string", "maxLength": 1048576, "description": "Text to feed to the command's standard input (at most 1 MiB)."}
  },
  "required": ["resource", "command"],
  "additionalProperties": false
}`)
}

// Decode validates run_ssh's arguments. Unknown arguments are rejected.
func (*RunSSH) Decode(raw json.RawMessage) (tools.Args, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", tools.ErrInvalidArguments, fmt.Sprintf(format, args...))
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, invalid("the arguments must be a JSON object with resource and command")
	}
	for name := range fields {
		switch name {
		case "resource", "command", "timeout_s", "stdin":
		default:
			return nil, invalid("unknown argument %q; run_ssh takes resource, command, timeout_s and stdin", name)
		}
	}
	a := &RunArgs{}
	str := func(name string, dst *string) error {
		v, ok := fields[name]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil || string(v) == "null" {
			return invalid("%s must be a string", name)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"resource", &a.Resource}, {"command", &a.Command}, {"stdin", &a.Stdin}} {
		if err := str(f.name, f.dst); err != nil {
			return nil, err
		}
	}
	switch {
	case a.Resource == "":
		return nil, invalid("resource is required: the name of an SSH host (see list_resources)")
	case strings.TrimSpace(a.Command) == "":
		return nil, invalid("command is required: the shell command line to run, e.g. \"df -h /\"")
	case len(a.Command) > MaxCommandBytes:
		return nil, invalid("command is %d bytes; at most %d (16 KiB) are accepted", len(a.Command), MaxCommandBytes)
	case strings.IndexByte(a.Command, 0) >= 0:
		return nil, invalid("command contains a NUL byte, which no shell command can hold")
	case len(a.Stdin) > MaxStdinBytes:
		return nil, invalid("stdin is %d bytes; at most %d (1 MiB) are accepted", len(a.Stdin), MaxStdinBytes)
	}
	a.facts, a.factsErr = ShellFacts(a.Command)
	if errors.Is(a.factsErr, ErrUnparsable) {
		// As with SQL: text the parser rejects never reaches policy, and
		// bash would run the part before the error.
		return nil, fmt.Errorf("%w: %v", tools.ErrInvalidArguments, a.factsErr)
	}
	if v, ok := fields["timeout_s"]; ok {
		var raw any
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		_ = dec.Decode(&raw)
		n, isNumber := raw.(json.Number)
		if !isNumber {
			return nil, invalid("timeout_s must be a whole number of seconds from 1 to %d", MaxTimeoutSeconds)
		}
		i, err := n.Int64()
		if err != nil || i < 1 || i > MaxTimeoutSeconds {
			return nil, invalid("timeout_s must be a whole number of seconds from 1 to %d, got %s", MaxTimeoutSeconds, n)
		}
		a.TimeoutS = int(i)
	}
	return a, nil
}

// Facts describes the command for policy, from a real shell parser, or
// refuses it when the analysis cannot see through part of it (opaque.go).
func (*RunSSH) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*RunArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("run_ssh: unexpected arguments %T", args)
	}
	if a.factsErr != nil {
		return policy.Facts{}, a.factsErr
	}
	f := a.facts
	return policy.Facts{Shell: &f}, nil
}

// Execute runs the command with the call's certificate.
func (*RunSSH) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*RunArgs)
	if !ok {
		return nil, fmt.Errorf("run_ssh: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	res, ok := target.Resource.(*Resource)
	if !ok {
		return nil, fmt.Errorf("run_ssh: resource %s is not an ssh resource: %w", a.Resource, tools.ErrInvalidArguments)
	}
	cred, ok := target.Credential.(*Credential)
	if !ok {
		return nil, fmt.Errorf("run_ssh: resource %s: the lease holds no ssh certificate", a.Resource)
	}
	timeout := target.Limits.Timeout
	if d := a.Timeout(); d > 0 && (timeout <= 0 || d < timeout) {
		timeout = d
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return res.Run(ctx, cred, Command{
		Line:     a.Command,
		Stdin:    a.Stdin,
		Timeout:  timeout,
		MaxBytes: target.Limits.MaxBytes,
	})
}

// Result is the structured content of a run_ssh result.
type Result struct {
	ExitCode   int    `json:"exit_code"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	Truncated  bool   `json:"truncated"`
	TimedOut   bool   `json:"timed_out,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Notice     string `json:"notice,omitempty"`
}

// renderTail is how much of each stream the text rendering shows.
const renderTail = 4000

// Render turns a masked Output into a Result and a short text: the exit code,
// then the end of stdout and stderr.
func (*RunSSH) Render(out *tools.Output) (any, string) {
	res := Result{Truncated: out.Truncated, DurationMS: out.Duration.Milliseconds(), Notice: out.Notice}
	if s := out.Streams; s != nil {
		res.ExitCode, res.Stdout, res.Stderr = s.ExitCode, s.Stdout, s.Stderr
	}
	if v, ok := out.Extra["timed_out"].(bool); ok {
		res.TimedOut = v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "exit code %d in %s", res.ExitCode, out.Duration.Round(time.Millisecond))
	if res.Notice != "" {
		fmt.Fprintf(&b, "; %s", res.Notice)
	}
	for _, s := range []struct{ name, text string }{{"stdout", res.Stdout}, {"stderr", res.Stderr}} {
		if s.text == "" {
			continue
		}
		fmt.Fprintf(&b, "\n--- %s", s.name)
		text := s.text
		if len(text) > renderTail {
			text = validUTF8Suffix(text[len(text)-renderTail:])
			fmt.Fprintf(&b, " (last %d bytes)", len(text))
		}
		b.WriteString(" ---\n")
		b.WriteString(strings.TrimRight(text, "\n"))
	}
	return res, b.String()
}

// validUTF8Suffix drops a partial rune at the start of s.
func validUTF8Suffix(s string) string {
	for i := 0; i < len(s) && i < utf8.UTFMax; i++ {
		if utf8.RuneStart(s[i]) {
			return s[i:]
		}
	}
	return s
}
