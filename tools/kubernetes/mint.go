package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/airlock-mcp/airlock/tools"
)

// Grant modes, as a Credential reports them.
const (
	ModeServiceAccount = "service_account"
	ModeImpersonate    = "impersonate"
)

// Mint creates the credential of a lease.
//
// For a service_account grant it asks the API server, with the broker's own
// credential, for a TokenRequest token of that ServiceAccount valid for the
// grant's ttl (at least 600 s, the API server's minimum); the token is the
// credential's only authentication. For an impersonate grant nothing is
// created: the credential is the broker's own config plus Impersonate-User
// and Impersonate-Group, expanded from the caller's identity, and the
// cluster authorizes each request as that user.
func (r *Resource) Mint(ctx context.Context, req tools.MintRequest) (tools.Credential, error) {
	g, ok := r.grants[req.GrantName]
	if !ok {
		return nil, fmt.Errorf("resource %s: no grant %q: %w", r.spec.Name, req.GrantName, ErrInvalidConfig)
	}
	if g.impersonates() {
		return r.mintImpersonation(req, g)
	}
	return r.mintToken(ctx, req, g)
}

func (r *Resource) mintImpersonation(req tools.MintRequest, g *grant) (*Credential, error) {
	user, err := g.user.expand(req.Identity.Subject, req.Identity.Email)
	if err != nil {
		return nil, fmt.Errorf("resource %s: grant %s: %w", r.spec.Name, req.GrantName, err)
	}
	groups := make([]string, 0, len(g.groups))
	for _, t := range g.groups {
		grp, err := t.expand(req.Identity.Subject, req.Identity.Email)
		if err != nil {
			return nil, fmt.Errorf("resource %s: grant %s: %w", r.spec.Name, req.GrantName, err)
		}
		groups = append(groups, grp)
	}
	cfg := rest.CopyConfig(r.config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	expires := req.Expires
	if expires.IsZero() {
		expires = time.Now().Add(g.ttl)
	}
	return &Credential{
		mode:    ModeImpersonate,
		handle:  user,
		user:    user,
		groups:  groups,
		expires: expires,
		config:  cfg,
	}, nil
}

func (r *Resource) mintToken(ctx context.Context, req tools.MintRequest, g *grant) (*Credential, error) {
	seconds := int64(g.ttl / time.Second)
	if seconds < int64(MinTokenTTL/time.Second) {
		seconds = int64(MinTokenTTL / time.Second)
	}
	bc, err := r.brokerClient()
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", r.spec.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, mintTimeout)
	defer cancel()
	body, _ := json.Marshal(&authenticationv1.TokenRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"},
		Spec:     authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	})
	path := "/api/v1/namespaces/" + url.PathEscape(g.saNamespace) + "/serviceaccounts/" + url.PathEscape(g.saName) + "/token"
	resp, err := bc.do(ctx, http.MethodPost, path, nil, "application/json", body, maxTokenResponse)
	if err != nil {
		return nil, fmt.Errorf("resource %s: minting a token for ServiceAccount %s/%s: %w", r.spec.Name, g.saNamespace, g.saName, describeAPIError(err))
	}
	var tr authenticationv1.TokenRequest
	if err := json.Unmarshal(resp, &tr); err != nil || tr.Status.Token == "" {
		return nil, fmt.Errorf("resource %s: minting a token for ServiceAccount %s/%s: the API server's answer holds no token", r.spec.Name, g.saNamespace, g.saName)
	}
	cfg := anonymousConfig(r.config)
	cfg.BearerToken = tr.Status.Token
	short := req.LeaseID
	if len(short) > 8 {
		short = short[:8]
	}
	return &Credential{
		mode:    ModeServiceAccount,
		handle:  g.saNamespace + "/" + g.saName + "#" + short,
		token:   tools.NewSecret(tr.Status.Token),
		expires: tr.Status.ExpirationTimestamp.Time,
		config:  cfg,
	}, nil
}

// mintTimeout bounds one TokenRequest.
const mintTimeout = 30 * time.Second

// maxTokenResponse bounds a TokenRequest answer (a few KiB in practice).
const maxTokenResponse = 1 << 20

// anonymousConfig copies where and how to reach the API server (host, TLS
// verification, proxy, timeouts) but none of the broker's authentication.
func anonymousConfig(c *rest.Config) *rest.Config {
	return &rest.Config{
		Host:    c.Host,
		APIPath: c.APIPath,
		TLSClientConfig: rest.TLSClientConfig{
			Insecure:   c.Insecure,
			ServerName: c.ServerName,
			CAFile:     c.CAFile,
			CAData:     slices.Clone(c.CAData),
			NextProtos: slices.Clone(c.NextProtos),
		},
		UserAgent:          c.UserAgent,
		DisableCompression: c.DisableCompression,
		Proxy:              c.Proxy,
		Timeout:            c.Timeout,
		Dial:               c.Dial,
	}
}

// Revoke does nothing and returns nil. A TokenRequest token cannot be
// revoked by itself: it is bound to nothing but its expiry (deleting the
// ServiceAccount would revoke every lease of the grant), so it dies at
// expirationSeconds, which is the lease's ttl. An impersonation is not a
// credential on the cluster at all.
func (r *Resource) Revoke(_ context.Context, _ tools.LeaseRef) error { return nil }

// brokerClient returns the client that speaks with the broker's own
// credential, created on first use.
func (r *Resource) brokerClient() (*apiClient, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broker == nil {
		c, err := newAPIClient(r.config)
		if err != nil {
			return nil, fmt.Errorf("building airlock's own client: %w", err)
		}
		r.broker = c
	}
	return r.broker, nil
}

// Credential is a lease's access to the cluster: a TokenRequest token (a
// tools.Secret) or an impersonation of the caller. Every way of printing it
// shows the handle and expiry only.
type Credential struct {
	mode    string
	handle  string
	token   tools.Secret
	user    string
	groups  []string
	expires time.Time
	config  *rest.Config

	mu     sync.Mutex
	client *apiClient
}

var _ tools.Credential = (*Credential)(nil)

// Handle is "NAMESPACE/NAME#<lease id prefix>" for a ServiceAccount token,
// the impersonated user otherwise.
func (c *Credential) Handle() string { return c.handle }

// Mode is ModeServiceAccount or ModeImpersonate.
func (c *Credential) Mode() string { return c.mode }

// Expires is when the token expires (as the API server set it) or, for an
// impersonation, the lease's expiry.
func (c *Credential) Expires() time.Time { return c.expires }

// Impersonates returns the user and groups requests act as (empty for a
// ServiceAccount token).
func (c *Credential) Impersonates() (user string, groups []string) {
	return c.user, slices.Clone(c.groups)
}

func (c *Credential) String() string {
	if c.mode == ModeImpersonate {
		return fmt.Sprintf("kubernetes impersonation of %s %v until %s", c.user, c.groups, c.expires.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("kubernetes token for %s (token [REDACTED], expires %s)", c.handle, c.expires.UTC().Format(time.RFC3339))
}

// GoString redacts too, so %#v cannot reach the token or the config.
func (c *Credential) GoString() string { return c.String() }

// Format redacts under every verb.
func (c *Credential) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// MarshalJSON shows what a lease records: mode, handle, expiry.
func (c *Credential) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Mode    string    `json:"mode"`
		Handle  string    `json:"handle"`
		Groups  []string  `json:"groups,omitempty"`
		Expires time.Time `json:"expires"`
	}{c.mode, c.handle, c.groups, c.expires.UTC()})
}

// LogValue logs the mode, handle and expiry, never the token.
func (c *Credential) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("mode", c.mode),
		slog.String("handle", c.handle),
		slog.Time("expires", c.expires),
	}
	if len(c.groups) > 0 {
		attrs = append(attrs, slog.String("groups", strings.Join(c.groups, ",")))
	}
	return slog.GroupValue(attrs...)
}

// apiClient returns the client requests of this lease go through, created
// on first use and reused for the lease's life (connections are shared
// with other leases to the same cluster by client-go's transport cache).
func (c *Credential) apiClient() (*apiClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		cl, err := newAPIClient(c.config)
		if err != nil {
			return nil, err
		}
		c.client = cl
	}
	return c.client, nil
}
