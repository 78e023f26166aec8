package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/tools"
)

// validAfterSkew backdates ValidAfter so a host whose clock runs a little
// behind still accepts a certificate minted just now.
const validAfterSkew = time.Minute

// Mint creates a fresh ed25519 key and a user certificate for it, signed by
// the resource's CA: the grant's principals, ValidAfter a minute before now,
// ValidBefore the lease's expiry, key id the call id (the host's auth log
// then names the call), a random serial. Extensions are empty unless the
// grant sets permit_pty; source-address is set when configured. Nothing is
// written to disk: the key lives in the returned Credential only.
func (r *Resource) Mint(_ context.Context, req tools.MintRequest) (tools.Credential, error) {
	if len(req.Grant.Principals) == 0 {
		return nil, fmt.Errorf("resource %s: grant %s names no principals: %w", r.spec.Name, req.GrantName, ErrInvalidConfig)
	}
	now := r.now()
	expires := req.Expires
	if expires.IsZero() {
		expires = now.Add(req.Grant.TTL)
	}

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating an ssh key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("generating an ssh key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	cert := &ssh.Certificate{
		Key:             signer.PublicKey(),
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           req.CallID,
		ValidPrincipals: slices.Clone(req.Grant.Principals),
		ValidAfter:      unixTime(now.Add(-validAfterSkew)),
		ValidBefore:     unixTime(expires),
		Permissions: ssh.Permissions{
			CriticalOptions: map[string]string{},
			Extensions:      map[string]string{},
		},
	}
	if req.Grant.PermitPTY {
		cert.Extensions["permit-pty"] = ""
	}
	if r.sourceAddress != "" {
		cert.CriticalOptions["source-address"] = r.sourceAddress
	}
	if err := cert.SignCert(rand.Reader, r.ca); err != nil {
		return nil, fmt.Errorf("resource %s: signing the user certificate: %w", r.spec.Name, err)
	}
	certSigner, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		return nil, fmt.Errorf("resource %s: signing the user certificate: %w", r.spec.Name, err)
	}
	return &Credential{
		serial:     serial,
		keyID:      req.CallID,
		principals: cert.ValidPrincipals,
		expires:    time.Unix(int64(cert.ValidBefore), 0),
		cert:       cert,
		signer:     certSigner,
	}, nil
}

func randomSerial() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("generating a certificate serial: %w", err)
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

func unixTime(t time.Time) uint64 {
	if t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}

// Credential is a minted user certificate and its private key, in memory
// only. Every way of printing it shows the serial and expiry, never the key.
type Credential struct {
	serial     uint64
	keyID      string
	principals []string
	expires    time.Time
	cert       *ssh.Certificate
	signer     ssh.Signer
}

var _ tools.Credential = (*Credential)(nil)

// Handle is the certificate serial, in decimal (as sshd logs it).
func (c *Credential) Handle() string { return strconv.FormatUint(c.serial, 10) }

// Certificate returns the signed certificate (public: no key material).
func (c *Credential) Certificate() *ssh.Certificate { return c.cert }

// Principals returns the certificate's principals; the first is the remote
// user run_ssh logs in as.
func (c *Credential) Principals() []string { return slices.Clone(c.principals) }

// Expires is the certificate's ValidBefore.
func (c *Credential) Expires() time.Time { return c.expires }

func (c *Credential) String() string {
	return fmt.Sprintf("ssh certificate serial %d for %v until %s (key [REDACTED])", c.serial, c.principals, c.expires.UTC().Format(time.RFC3339))
}

// GoString redacts too, so %#v cannot print the key.
func (c *Credential) GoString() string { return c.String() }

// Format redacts under every verb.
func (c *Credential) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// MarshalJSON shows what a lease records: serial, key id, principals, expiry.
func (c *Credential) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Serial  string    `json:"serial"`
		KeyID   string    `json:"key_id"`
		Expires time.Time `json:"expires"`
	}{c.Handle(), c.keyID, c.expires.UTC()})
}

// LogValue logs the serial, key id and expiry.
func (c *Credential) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("serial", c.Handle()),
		slog.String("key_id", c.keyID),
		slog.Time("expires", c.expires),
	)
}
