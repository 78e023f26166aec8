package httpkind

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/airlock-mcp/airlock/tools"
)

// Token endpoint bounds.
const (
	tokenTimeout = 15 * time.Second
	// tokenEarly is how long before its expiry a token is replaced.
	tokenEarly = 10 * time.Second
	// maxTokenResponse bounds a token or revocation answer.
	maxTokenResponse = 64 << 10
)

// Mint creates the credential of a lease.
//
//   - oauth2_client_credentials: a token from the provider's token endpoint
//     for the grant's scopes and audience, with the client secret airlock
//     holds by reference; kept for the lease (a new one is fetched if it
//     expires first) and revoked at the lease's end when the resource names
//     a revocation endpoint;
//   - bearer, header: the secret the grant (or the resource) names by
//     reference, read now, so a rotated file is picked up by the next lease;
//   - none: a credential that adds nothing.
func (r *Resource) Mint(ctx context.Context, req tools.MintRequest) (tools.Credential, error) {
	g, ok := r.grants[req.GrantName]
	if !ok {
		return nil, fmt.Errorf("resource %s: no grant %q: %w", r.spec.Name, req.GrantName, ErrInvalidConfig)
	}
	expires := req.Expires
	if expires.IsZero() {
		expires = r.now().Add(g.ttl)
	}
	short := req.LeaseID
	if len(short) > 8 {
		short = short[:8]
	}
	c := &Credential{mode: r.auth.typ, leaseID: req.LeaseID, expires: expires, header: r.auth.header}
	switch r.auth.typ {
	case AuthNone:
		c.handle = "none#" + short
	case AuthBearer, AuthHeader:
		ref := g.token
		if !ref.set() {
			ref = r.auth.token
		}
		s, err := ref.resolve(r.env)
		if err != nil {
			return nil, fmt.Errorf("resource %s: grant %s: reading the %s secret: %w", r.spec.Name, req.GrantName, r.auth.typ, err)
		}
		c.secret = s
		c.handle = r.auth.typ + ":" + ref.String() + "#" + short
	case AuthClientCreds:
		c.handle = r.auth.clientID + "#" + short
		c.source = r.tokenSource(g)
		c.now = r.now
		if _, err := c.token(ctx); err != nil {
			return nil, fmt.Errorf("resource %s: grant %s: %w", r.spec.Name, req.GrantName, err)
		}
		r.mu.Lock()
		r.leases[req.LeaseID] = c
		r.mu.Unlock()
	}
	return c, nil
}

// Revoke ends a lease's credential: each client-credentials token it
// fetched is revoked at the revocation endpoint (RFC 7009) when the
// resource names one, and otherwise left to expire. A lease this process
// never minted (one a crash left behind) has nothing to revoke here: its
// token dies at its expiry.
func (r *Resource) Revoke(ctx context.Context, lease tools.LeaseRef) error {
	r.mu.Lock()
	c := r.leases[lease.LeaseID]
	delete(r.leases, lease.LeaseID)
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	toks := c.drain()
	if r.auth.revocationURL == nil {
		return nil
	}
	var errs []error
	for _, t := range toks {
		if err := r.revokeToken(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tokenClient is the client the token and revocation endpoints are spoken
// to with: no proxy, a timeout, no redirects.
var tokenClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, TLSHandshakeTimeout: tlsHandshakeTimeout, MaxIdleConnsPerHost: 2, IdleConnTimeout: idleConnTimeout},
	Timeout:   tokenTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// tokenSource fetches a client-credentials token for the grant.
func (r *Resource) tokenSource(g *grant) func(ctx context.Context) (tools.Secret, time.Time, error) {
	return func(ctx context.Context) (tools.Secret, time.Time, error) {
		secret, err := r.auth.clientSecret.resolve(r.env)
		if err != nil {
			return tools.Secret{}, time.Time{}, fmt.Errorf("reading the client secret: %w", err)
		}
		cfg := clientcredentials.Config{
			ClientID:     r.auth.clientID,
			ClientSecret: secret.Reveal(),
			TokenURL:     r.auth.tokenURL.String(),
			Scopes:       g.scopes,
			AuthStyle:    oauth2.AuthStyleInHeader,
		}
		if r.auth.inParams {
			cfg.AuthStyle = oauth2.AuthStyleInParams
		}
		if len(g.audience) > 0 {
			cfg.EndpointParams = url.Values{"audience": {strings.Join(g.audience, " ")}}
		}
		ctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, tokenClient), tokenTimeout)
		defer cancel()
		tok, err := cfg.Token(ctx)
		if err != nil {
			return tools.Secret{}, time.Time{}, describeTokenError(r.auth.tokenURL, err, newRedactor(secret.Reveal(), r.basicAuth(secret)))
		}
		if tok.AccessToken == "" {
			return tools.Secret{}, time.Time{}, fmt.Errorf("%w: %s answered without an access token", ErrTokenEndpoint, r.auth.tokenURL.Redacted())
		}
		if tt := strings.ToLower(tok.TokenType); tt != "" && tt != "bearer" {
			return tools.Secret{}, time.Time{}, fmt.Errorf("%w: %s issued a %q token; airlock sends bearer tokens only", ErrTokenEndpoint, r.auth.tokenURL.Redacted(), tok.TokenType)
		}
		return tools.NewSecret(tok.AccessToken), tok.Expiry, nil
	}
}

// describeTokenError keeps the provider's error code and description and
// drops everything else (the response body could echo a credential); the
// client secret is removed from what is kept, in case the provider quotes
// it.
func describeTokenError(endpoint *url.URL, err error, red *redactor) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := re.ErrorCode
		if re.ErrorDescription != "" {
			msg += ": " + re.ErrorDescription
		}
		if msg == "" && re.Response != nil {
			msg = re.Response.Status
		}
		return fmt.Errorf("%w: %s: %s", ErrTokenEndpoint, endpoint.Redacted(), red.string(msg))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%w: %s: %s", ErrTokenEndpoint, endpoint.Redacted(), red.string(ue.Err.Error()))
	}
	return fmt.Errorf("%w: %s: %s", ErrTokenEndpoint, endpoint.Redacted(), red.string(err.Error()))
}

// basicAuth is the client's HTTP Basic credential as sent on the wire
// (base64 of the form-encoded id and secret, RFC 6749 §2.3.1).
func (r *Resource) basicAuth(secret tools.Secret) string {
	return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(r.auth.clientID) + ":" + url.QueryEscape(secret.Reveal())))
}

// revokeToken revokes one access token (RFC 7009), authenticating as the
// client the way the token endpoint is spoken to.
func (r *Resource) revokeToken(ctx context.Context, tok tools.Secret) error {
	secret, err := r.auth.clientSecret.resolve(r.env)
	if err != nil {
		return fmt.Errorf("resource %s: revoking a token: reading the client secret: %w", r.spec.Name, err)
	}
	form := url.Values{"token": {tok.Reveal()}, "token_type_hint": {"access_token"}}
	if r.auth.inParams {
		form.Set("client_id", r.auth.clientID)
		form.Set("client_secret", secret.Reveal())
	}
	ctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.auth.revocationURL.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("resource %s: revoking a token: %w", r.spec.Name, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if !r.auth.inParams {
		req.SetBasicAuth(url.QueryEscape(r.auth.clientID), url.QueryEscape(secret.Reveal()))
	}
	resp, err := tokenClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("resource %s: revoking a token at %s: %v: %w", r.spec.Name, r.auth.revocationURL.Redacted(), err, tools.ErrBackendUnavailable)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var oe struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &oe)
	return fmt.Errorf("resource %s: revoking a token at %s: %s %s", r.spec.Name, r.auth.revocationURL.Redacted(), resp.Status, oe.Error)
}

// Credential is a lease's access to the service: a client-credentials
// token (refetched if it expires before the lease), a bearer token or an
// API key header. Every way of printing it shows the mode, handle and
// expiry only.
type Credential struct {
	mode    string
	leaseID string
	handle  string
	header  string
	expires time.Time

	// bearer, header
	secret tools.Secret

	// oauth2_client_credentials
	source func(ctx context.Context) (tools.Secret, time.Time, error)
	now    func() time.Time

	mu       sync.Mutex
	current  tools.Secret
	tokenExp time.Time
	fetched  []tools.Secret // every token fetched, for revocation
	revoked  bool
	fetches  int
}

var _ tools.Credential = (*Credential)(nil)

// Handle names the credential without revealing it: the OAuth2 client id,
// or the secret's reference, and the lease id's prefix.
func (c *Credential) Handle() string { return c.handle }

// Mode is the resource's auth type.
func (c *Credential) Mode() string { return c.mode }

// Expires is the lease's expiry.
func (c *Credential) Expires() time.Time { return c.expires }

// Fetches is how many tokens the credential has fetched (tests: a lease's
// token is cached).
func (c *Credential) Fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// Secret returns the current token or header value, for tests that look for
// it where it must never be. It prints as [REDACTED].
func (c *Credential) Secret() tools.Secret {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mode == AuthClientCreds {
		return c.current
	}
	return c.secret
}

func (c *Credential) String() string {
	return fmt.Sprintf("http %s credential %s ([REDACTED], lease expires %s)", c.mode, c.handle, c.expires.UTC().Format(time.RFC3339))
}

// GoString redacts too.
func (c *Credential) GoString() string { return c.String() }

// Format redacts under every verb.
func (c *Credential) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// MarshalJSON shows what a lease records: mode, handle, expiry.
func (c *Credential) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Mode    string    `json:"mode"`
		Handle  string    `json:"handle"`
		Expires time.Time `json:"expires"`
	}{c.mode, c.handle, c.expires.UTC()})
}

// LogValue logs the mode, handle and expiry, never the secret.
func (c *Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mode", c.mode), slog.String("handle", c.handle), slog.Time("expires", c.expires))
}

// token returns the client-credentials token, fetching a new one when there
// is none or it is about to expire.
func (c *Credential) token(ctx context.Context) (tools.Secret, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revoked {
		return tools.Secret{}, errors.New("the lease's credential was revoked")
	}
	if !c.current.IsZero() && (c.tokenExp.IsZero() || c.now().Add(tokenEarly).Before(c.tokenExp)) {
		return c.current, nil
	}
	tok, exp, err := c.source(ctx)
	if err != nil {
		return tools.Secret{}, err
	}
	c.fetches++
	c.current, c.tokenExp = tok, exp
	c.fetched = append(c.fetched, tok)
	return tok, nil
}

// drain marks the credential revoked and returns the tokens to revoke.
func (c *Credential) drain() []tools.Secret {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revoked = true
	out := c.fetched
	c.fetched, c.current = nil, tools.Secret{}
	return out
}

// authorize adds the credential to a request and returns the secret it
// sent ("" for none), for Execute to remove from what comes back.
func (c *Credential) authorize(ctx context.Context, req *http.Request) (string, error) {
	switch c.mode {
	case AuthNone:
		return "", nil
	case AuthBearer:
		req.Header.Set("Authorization", "Bearer "+c.secret.Reveal())
		return c.secret.Reveal(), nil
	case AuthHeader:
		req.Header.Set(c.header, c.secret.Reveal())
		return c.secret.Reveal(), nil
	case AuthClientCreds:
		tok, err := c.token(ctx)
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok.Reveal())
		return tok.Reveal(), nil
	default:
		return "", fmt.Errorf("unknown credential mode %q", c.mode)
	}
}
