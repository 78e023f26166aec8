package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/tools"
)

// staticKey is a long-lived key in the test user's authorized_keys: the
// baseline a certificate per call is compared with.
func staticKey(b *testing.B) (ssh.Signer, ed25519.PrivateKey) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		b.Fatal(err)
	}
	return s, priv
}

// BenchmarkMint is minting alone: key generation and certificate signing.
func BenchmarkMint(b *testing.B) {
	caPEM, hostKey := testCA(b)
	r, err := NewKind().Open(validSpec(hostKey), env{"CA": string(caPEM)})
	if err != nil {
		b.Fatal(err)
	}
	g := r.Spec().Grants["operator"]
	for b.Loop() {
		if _, err := r.Mint(context.Background(), tools.MintRequest{Grant: g, CallID: "bench", Expires: time.Now().Add(g.TTL)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunSSHMinted is what run_ssh does per call: mint a key and a
// certificate, connect, verify the host key, authenticate, run `true`.
func BenchmarkRunSSHMinted(b *testing.B) {
	srv := testenv.OpenSSH(b)
	res := openHost(b, srv, nil)
	g := res.Spec().Grants["operator"]
	for b.Loop() {
		c, err := res.Mint(context.Background(), tools.MintRequest{Grant: g, CallID: "bench", Expires: time.Now().Add(g.TTL)})
		if err != nil {
			b.Fatal(err)
		}
		out, err := res.Run(context.Background(), c.(*Credential), Command{Line: "true", Timeout: 10 * time.Second})
		if err != nil || out.Streams.ExitCode != 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunSSHStaticKey is the baseline: a long-lived key in
// authorized_keys, x/crypto/ssh dial with the host key pinned, run `true`.
func BenchmarkRunSSHStaticKey(b *testing.B) {
	signer, _ := staticKey(b)
	srv := testenv.OpenSSH(b, testenv.WithAuthorizedKey(signer.PublicKey()))
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(srv.HostPublicKey))
	if err != nil {
		b.Fatal(err)
	}
	config := &ssh.ClientConfig{
		User:              srv.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   ssh.FixedHostKey(hostKey),
		HostKeyAlgorithms: []string{hostKey.Type()},
		Timeout:           10 * time.Second,
	}
	for b.Loop() {
		client, err := ssh.Dial("tcp", srv.Address, config)
		if err != nil {
			b.Fatal(err)
		}
		session, err := client.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := session.Run("true"); err != nil {
			b.Fatal(err)
		}
		client.Close()
	}
}

// BenchmarkRunSSHBinary is the same static key through OpenSSH's own client:
// ssh -i KEY -o StrictHostKeyChecking=yes ... true.
func BenchmarkRunSSHBinary(b *testing.B) {
	bin, err := exec.LookPath("ssh")
	if err != nil {
		b.Skip("no ssh client: install the Debian package openssh-client")
	}
	signer, priv := staticKey(b)
	srv := testenv.OpenSSH(b, testenv.WithAuthorizedKey(signer.PublicKey()))
	dir := b.TempDir()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		b.Fatal(err)
	}
	keyFile, known := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	host, port, _ := net.SplitHostPort(srv.Address)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(known, []byte("["+host+"]:"+port+" "+srv.HostPublicKey+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	args := []string{"-F", "/dev/null", "-i", keyFile, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known, "-o", "HostKeyAlgorithms=ssh-ed25519",
		"-p", port, "-l", srv.User, host, "true"}
	for b.Loop() {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			b.Fatalf("ssh %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}
