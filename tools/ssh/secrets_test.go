package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/tools"
)

// Secrets read without their armour from a real host come back masked by
// the default profile, as the broker masks run_ssh's streams: the body of a
// private key (tail -n +2 | head -n -1) and an AWS secret read in part
// (tail -c 41). Both were returned whole before.
func TestSecretsWithoutArmourAreMasked(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, nil)
	home := homeOf(t, srv.User)

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(block))
	body := strings.Join(strings.Split(strings.TrimSpace(keyPEM), "\n")[1:len(strings.Split(strings.TrimSpace(keyPEM), "\n"))-1], "\n")
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKQ"
	creds := "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = " + secret + "\n"

	keyFile := filepath.Join(home, ".airlock-test-key")
	credFile := filepath.Join(home, ".airlock-test-credentials")
	for path, content := range map[string]string{keyFile: keyPEM, credFile: creds} {
		writeAs(t, path, content, srv.User)
		t.Cleanup(func() { _ = os.Remove(path) })
	}

	engine, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	profile, ok := engine.Profile("default")
	if !ok {
		t.Fatal("no default profile")
	}
	for _, c := range []struct {
		command string
		leak    []string // what must not survive masking
	}{
		{"tail -n +2 ~/.airlock-test-key | head -n -1", strings.Split(body, "\n")},
		{"tail -c 41 ~/.airlock-test-credentials", []string{secret}},
	} {
		cred := mint(t, res, "operator", "secrets")
		out, err := execute(t, res, cred, `{"resource":"web-1","command":`+jsonString(c.command)+`}`, tools.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", c.command, err)
		}
		raw := out.Streams.Stdout
		if !strings.Contains(raw, c.leak[0]) {
			t.Fatalf("%s: the host did not return the secret, so this shows nothing: %q", c.command, raw)
		}
		masked, _, err := profile.MaskText(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range c.leak {
			if l != "" && strings.Contains(masked, l) {
				t.Errorf("%s: %q survived masking:\n%s", c.command, l, masked)
			}
		}
	}
}
