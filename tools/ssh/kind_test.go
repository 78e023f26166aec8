package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/tools"
)

// testCA returns a CA key in OpenSSH PEM and a host key line.
func testCA(t testing.TB) (caPEM []byte, hostKey string) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _, _ := ed25519.GenerateKey(rand.Reader)
	pk, _ := ssh.NewPublicKey(hostPub)
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
}

func validSpec(hostKey string) tools.ResourceSpec {
	return tools.ResourceSpec{
		Name: "web-1", Kind: KindName, Address: "10.0.0.5:22", HostKey: hostKey, CAKeyEnv: "CA",
		Grants: map[string]tools.Grant{"operator": {Principals: []string{"ops"}, TTL: 2 * time.Minute}},
	}
}

func TestOpenValidation(t *testing.T) {
	caPEM, hostKey := testCA(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "user_ca")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	encrypted := func() string {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(block))
	}()
	e := env{"CA": string(caPEM), "ENCRYPTED": encrypted, "GARBAGE": "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWNhLWtleS1tYXRlcmlhbA==\n-----END OPENSSH PRIVATE KEY-----\n"}

	cases := []struct {
		name string
		edit func(*tools.ResourceSpec)
		want string // empty: valid
	}{
		{"valid", func(*tools.ResourceSpec) {}, ""},
		{"ca_key_file", func(s *tools.ResourceSpec) { s.CAKeyEnv, s.CAKeyFile = "", caFile }, ""},
		{"ipv6 address", func(s *tools.ResourceSpec) { s.Address = "[::1]:2222" }, ""},
		{"no address", func(s *tools.ResourceSpec) { s.Address = "" }, "resource web-1: address: required"},
		{"address without port", func(s *tools.ResourceSpec) { s.Address = "10.0.0.5" }, `address: "10.0.0.5" is not host:port`},
		{"bad port", func(s *tools.ResourceSpec) { s.Address = "10.0.0.5:ssh" }, `address: port "ssh" is not a number`},
		{"no host verification", func(s *tools.ResourceSpec) { s.HostKey = "" }, "host_key: set exactly one of host_key (the host's public key), host_ca (a host CA's public key) or known_hosts_file; none is set"},
		{"two host verifications", func(s *tools.ResourceSpec) { s.HostCA = hostKey }, "more than one is set"},
		{"bad host key", func(s *tools.ResourceSpec) { s.HostKey = "ssh-ed25519 nope" }, "host_key: not a public key in authorized_keys format"},
		{"bad host ca", func(s *tools.ResourceSpec) { s.HostKey, s.HostCA = "", "nope" }, "host_ca: not a public key"},
		{"missing known_hosts", func(s *tools.ResourceSpec) { s.HostKey, s.KnownHostsFile = "", "/nonexistent/known_hosts" }, "known_hosts_file: cannot read /nonexistent/known_hosts"},
		{"no CA", func(s *tools.ResourceSpec) { s.CAKeyEnv = "" }, "ca_key_file: required"},
		{"two CAs", func(s *tools.ResourceSpec) { s.CAKeyFile = caFile }, "set exactly one of ca_key_file and ca_key_env"},
		{"CA variable unset", func(s *tools.ResourceSpec) { s.CAKeyEnv = "UNSET" }, "ca_key_env: the environment variable UNSET is not set"},
		{"CA file missing", func(s *tools.ResourceSpec) { s.CAKeyEnv, s.CAKeyFile = "", "/nonexistent/ca" }, "ca_key_file: cannot read /nonexistent/ca"},
		{"CA encrypted", func(s *tools.ResourceSpec) { s.CAKeyEnv = "ENCRYPTED" }, "encrypted with a passphrase"},
		{"CA garbage", func(s *tools.ResourceSpec) { s.CAKeyEnv = "GARBAGE" }, "ca_key_env: not an SSH private key"},
		{"postgres setting", func(s *tools.ResourceSpec) { s.AdminDSNEnv = "X" }, "admin_dsn_env: not an ssh setting"},
		{"kubernetes setting", func(s *tools.ResourceSpec) { s.KubeconfigFile = "/k" }, "kubeconfig_file: not an ssh setting"},
		{"source address", func(s *tools.ResourceSpec) { s.SourceAddress = []string{"10.0.0.0/8", "nope"} }, `source_address: "nope" is neither`},
		{"negative max_sessions", func(s *tools.ResourceSpec) { s.MaxSessions = -1 }, "max_sessions: -1 is negative"},
		{"no grants", func(s *tools.ResourceSpec) { s.Grants = nil }, "grants: an ssh resource needs at least one grant"},
		{"grant without principals", func(s *tools.ResourceSpec) { s.Grants = map[string]tools.Grant{"op": {TTL: time.Minute}} }, "grants.op.principals: required"},
		{"grant without ttl", func(s *tools.ResourceSpec) { s.Grants = map[string]tools.Grant{"op": {Principals: []string{"ops"}}} }, "grants.op.ttl: required"},
		{"bad principal", func(s *tools.ResourceSpec) {
			s.Grants = map[string]tools.Grant{"op": {Principals: []string{"a,b"}, TTL: time.Minute}}
		}, `grants.op.principals: "a,b" is not a principal`},
		{"postgres grant", func(s *tools.ResourceSpec) {
			s.Grants = map[string]tools.Grant{"op": {Principals: []string{"ops"}, TTL: time.Minute, Roles: []string{"r"}}}
		}, "grants.op.roles: not an ssh grant setting"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := validSpec(hostKey)
			tc.edit(&spec)
			res, err := NewKind().Open(spec, e)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if got := cap(res.(*Resource).sessions); got != DefaultMaxSessions {
					t.Errorf("max sessions %d", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "resource web-1: ") {
				t.Errorf("error does not name the resource: %v", err)
			}
			for _, secret := range []string{"c2VjcmV0", "BEGIN OPENSSH", string(caPEM[40:80])} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks key material: %v", err)
				}
			}
		})
	}
}

func TestMintCertificate(t *testing.T) {
	caPEM, hostKey := testCA(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	spec := validSpec(hostKey)
	spec.SourceAddress = []string{"10.0.0.0/8", "192.0.2.1"}
	spec.Grants["pty"] = tools.Grant{Principals: []string{"ops", "deploy"}, TTL: time.Minute, PermitPTY: true}
	r, err := NewKind(WithClock(func() time.Time { return now })).Open(spec, env{"CA": string(caPEM)})
	if err != nil {
		t.Fatal(err)
	}
	res := r.(*Resource)

	for _, grant := range []string{"operator", "pty"} {
		g := spec.Grants[grant]
		c, err := res.Mint(context.Background(), tools.MintRequest{GrantName: grant, Grant: g, CallID: "call-42", Expires: now.Add(g.TTL)})
		if err != nil {
			t.Fatal(err)
		}
		cred := c.(*Credential)
		cert := cred.Certificate()
		wantExt := map[string]string{}
		if g.PermitPTY {
			wantExt["permit-pty"] = ""
		}
		switch {
		case cert.CertType != ssh.UserCert:
			t.Errorf("type %d", cert.CertType)
		case cert.KeyId != "call-42":
			t.Errorf("key id %q", cert.KeyId)
		case fmt.Sprint(cert.ValidPrincipals) != fmt.Sprint(g.Principals):
			t.Errorf("principals %v", cert.ValidPrincipals)
		case cert.ValidAfter != uint64(now.Add(-time.Minute).Unix()):
			t.Errorf("valid after %d", cert.ValidAfter)
		case cert.ValidBefore != uint64(now.Add(g.TTL).Unix()):
			t.Errorf("valid before %d", cert.ValidBefore)
		case fmt.Sprint(cert.Extensions) != fmt.Sprint(wantExt):
			t.Errorf("extensions %v, want %v", cert.Extensions, wantExt)
		case fmt.Sprint(cert.CriticalOptions) != "map[source-address:10.0.0.0/8,192.0.2.1]":
			t.Errorf("critical options %v", cert.CriticalOptions)
		case cert.Key.Type() != ssh.KeyAlgoED25519:
			t.Errorf("key type %s", cert.Key.Type())
		case cred.Handle() != fmt.Sprint(cert.Serial):
			t.Errorf("handle %s serial %d", cred.Handle(), cert.Serial)
		}
		checker := ssh.CertChecker{
			Clock:                    func() time.Time { return now },
			SupportedCriticalOptions: []string{"source-address"},
			IsUserAuthority:          func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), res.ca.PublicKey().Marshal()) },
		}
		if err := checker.CheckCert("ops", cert); err != nil {
			t.Errorf("certificate does not verify: %v", err)
		}
	}

	a, _ := res.Mint(context.Background(), tools.MintRequest{Grant: spec.Grants["operator"], CallID: "a"})
	b, _ := res.Mint(context.Background(), tools.MintRequest{Grant: spec.Grants["operator"], CallID: "b"})
	if a.Handle() == b.Handle() || bytes.Equal(a.(*Credential).cert.Key.Marshal(), b.(*Credential).cert.Key.Marshal()) {
		t.Error("two mints share a serial or a key")
	}
}

func TestCredentialRedacts(t *testing.T) {
	caPEM, hostKey := testCA(t)
	r, err := NewKind().Open(validSpec(hostKey), env{"CA": string(caPEM)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Mint(context.Background(), tools.MintRequest{Grant: r.Spec().Grants["operator"], CallID: "call-1", Expires: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("minted", "credential", c)
	js, _ := json.Marshal(c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%#v", c), fmt.Sprintf("%+v", c), c.String(), logged.String(), string(js)} {
		if !strings.Contains(s, c.Handle()) {
			t.Errorf("%q does not name the serial", s)
		}
		for _, leak := range []string{"PRIVATE", "signer", "0x"} {
			if strings.Contains(s, leak) {
				t.Errorf("%q shows %s", s, leak)
			}
		}
	}
	if r.Reusable() {
		t.Error("Reusable: one certificate per call")
	}
	if err := r.Revoke(context.Background(), tools.LeaseRef{Handle: c.Handle()}); err != nil {
		t.Errorf("Revoke: %v", err)
	}
	if o, err := r.Orphans(context.Background()); o != nil || err != nil {
		t.Errorf("Orphans: %v %v", o, err)
	}
}

func TestDecode(t *testing.T) {
	tool := &RunSSH{}
	cases := []struct {
		raw, want string // want: canonical JSON, or the error's text
	}{
		{`{"resource":"web-1","command":"ls -l"}`, `{"resource":"web-1","command":"ls -l"}`},
		{`{"command":"ls","timeout_s":30,"stdin":"x","resource":"web-1"}`, `{"resource":"web-1","command":"ls","timeout_s":30,"stdin":"x"}`},
		{`{"resource":"web-1","command":"a<b"}`, `{"resource":"web-1","command":"a<b"}`},
		{`{"resource":"web-1"}`, "command is required"},
		{`{"resource":"web-1","command":"  "}`, "command is required"},
		{`{"command":"ls"}`, "resource is required"},
		{`{"resource":"web-1","command":"ls","timeout_s":0}`, "timeout_s must be a whole number of seconds from 1 to 3600"},
		{`{"resource":"web-1","command":"ls","timeout_s":3601}`, "timeout_s must be"},
		{`{"resource":"web-1","command":"ls","timeout_s":1.5}`, "timeout_s must be"},
		{`{"resource":"web-1","command":"ls","timeout_s":"5"}`, "timeout_s must be"},
		{`{"resource":"web-1","command":42}`, "command must be a string"},
		{`{"resource":"web-1","command":"ls","pty":true}`, `unknown argument "pty"`},
		{`[1]`, "must be a JSON object"},
		{`{"resource":"web-1","command":"cat","stdin":"` + strings.Repeat("x", MaxStdinBytes+1) + `"}`, "stdin is 1048577 bytes"},
	}
	for _, tc := range cases {
		args, err := tool.Decode([]byte(tc.raw))
		name := tc.raw[:min(len(tc.raw), 60)]
		if strings.HasPrefix(tc.want, "{") {
			if err != nil || string(args.Canonical()) != tc.want {
				t.Errorf("%s: got %v %s", name, err, args.Canonical())
			}
			continue
		}
		if !errors.Is(err, tools.ErrInvalidArguments) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
}

func TestRender(t *testing.T) {
	out := &tools.Output{
		Streams:   &tools.Streams{ExitCode: 2, Stdout: strings.Repeat("é", 3000), Stderr: "boom\n"},
		Truncated: true, Notice: "stdout was cut at 6000 of 9000 bytes", Duration: 1234 * time.Millisecond,
	}
	structured, text := (&RunSSH{}).Render(out)
	res := structured.(Result)
	if res.ExitCode != 2 || !res.Truncated || res.DurationMS != 1234 || res.Stderr != "boom\n" || len(res.Stdout) != 6000 {
		t.Errorf("structured %+v", res)
	}
	if !strings.HasPrefix(text, "exit code 2 in 1.234s; stdout was cut") || !strings.Contains(text, "--- stderr ---\nboom") ||
		!strings.Contains(text, "--- stdout (last 4000 bytes) ---") {
		t.Errorf("text %q", text[:200])
	}
}
