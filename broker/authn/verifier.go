package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/airlock-mcp/airlock/policy"
)

// maxTokenBytes bounds what is parsed at all; real access tokens are a few KiB.
const maxTokenBytes = 16 << 10

// Verifier verifies OAuth 2.0 access tokens (JWTs) issued by one OpenID
// Connect provider and turns them into a policy.Identity.
//
// Signatures are checked by go-oidc against the provider's published key set
// (found by discovery, cached, and fetched again when a token names a key ID
// not seen before, which is how providers rotate keys). Algorithm, issuer,
// audience, time and claim checks are done here so that each refusal has a
// precise reason.
type Verifier struct {
	cfg    OIDCConfig
	cfgErr error
	logger *slog.Logger
	client *http.Client
	now    func() time.Time

	backoffMin, backoffMax time.Duration

	provider atomic.Pointer[discovered]
	ready    chan struct{}

	mu      sync.Mutex
	started bool
	lastErr error
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// discovered is what discovery yields: a go-oidc verifier bound to the
// provider's key set.
type discovered struct {
	verifier *oidc.IDTokenVerifier
	jwksURL  string
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(v *Verifier) { v.logger = l } }

// WithHTTPClient sets the client used for discovery and key fetches (default:
// a client with a 10 s timeout).
func WithHTTPClient(c *http.Client) Option { return func(v *Verifier) { v.client = c } }

// WithClock sets the clock used for exp, nbf and iat checks.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// WithDiscoveryBackoff sets the first and the longest wait between discovery
// attempts (default 500 ms and 30 s).
func WithDiscoveryBackoff(initial, max time.Duration) Option {
	return func(v *Verifier) { v.backoffMin, v.backoffMax = initial, max }
}

// NewVerifier returns a Verifier for cfg. It does no I/O: Start begins
// discovery. cfg is checked with CheckAndSetDefaults; a bad configuration
// leaves the verifier never ready, with the error in Ready's reason (callers
// are expected to have checked it already).
func NewVerifier(cfg OIDCConfig, opts ...Option) *Verifier {
	cfg.RequiredScopes = slices.Clone(cfg.RequiredScopes)
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	v := &Verifier{
		cfgErr:     cfg.CheckAndSetDefaults(),
		cfg:        cfg,
		logger:     slog.Default(),
		client:     &http.Client{Timeout: 10 * time.Second},
		now:        time.Now,
		backoffMin: 500 * time.Millisecond,
		backoffMax: 30 * time.Second,
		ready:      make(chan struct{}),
	}
	for _, o := range opts {
		o(v)
	}
	return v
}

// Config returns the verifier's configuration, defaults applied.
func (v *Verifier) Config() OIDCConfig { return v.cfg }

// Start begins discovery in the background, retrying with backoff until the
// provider answers or ctx ends. It returns at once; Ready says how it goes.
func (v *Verifier) Start(ctx context.Context) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.started || v.cfgErr != nil {
		return
	}
	v.started = true
	ctx, v.cancel = context.WithCancel(ctx)
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.discoverLoop(ctx)
	}()
}

// Close stops discovery and waits for it.
func (v *Verifier) Close() {
	v.mu.Lock()
	cancel := v.cancel
	v.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	v.wg.Wait()
}

// Ready reports whether tokens can be verified, and when not, why.
func (v *Verifier) Ready() (bool, string) {
	if v.provider.Load() != nil {
		return true, ""
	}
	if v.cfgErr != nil {
		return false, "auth.oidc is invalid: " + v.cfgErr.Error()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.started {
		return false, fmt.Sprintf("identity provider %s has not been contacted yet", v.cfg.Issuer)
	}
	return false, v.unavailableLocked().Error()
}

// WaitReady blocks until the provider has been discovered or ctx ends.
func (v *Verifier) WaitReady(ctx context.Context) error {
	select {
	case <-v.ready:
		return nil
	case <-ctx.Done():
		_, why := v.Ready()
		return fmt.Errorf("%s: %w", why, ctx.Err())
	}
}

func (v *Verifier) unavailableLocked() *UnavailableError {
	err := v.lastErr
	if err == nil {
		err = ErrNotReady
	}
	return &UnavailableError{Issuer: v.cfg.Issuer, Err: err}
}

func (v *Verifier) discoverLoop(ctx context.Context) {
	delay := v.backoffMin
	for attempt := 1; ; attempt++ {
		d, err := v.discover(ctx)
		if err == nil {
			v.provider.Store(d)
			close(v.ready)
			v.logger.Info("identity provider ready", keyIssuer, v.cfg.Issuer, keyJWKS, d.jwksURL, keyAttempt, attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		v.mu.Lock()
		v.lastErr = err
		v.mu.Unlock()
		wait := delay/2 + rand.N(delay/2+1) // jitter in [delay/2, delay]
		v.logger.Warn("identity provider unreachable; calls are refused until it answers",
			keyIssuer, v.cfg.Issuer, keyAttempt, attempt, keyRetryIn, wait, keyError, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		delay = min(delay*2, v.backoffMax)
	}
}

func (v *Verifier) discover(ctx context.Context) (*discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.client), v.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		return nil, fmt.Errorf("discovery: no jwks_uri in the provider's metadata (%v)", err)
	}
	// The key set keeps its own background context (go-oidc ignores
	// cancellation there); the client goes with it.
	keys := &keySet{remote: oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), v.client), meta.JWKSURI)}
	verifier := oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
		SupportedSigningAlgs: v.cfg.Algorithms,
		// Checked in Verify, with reasons and the configured clock skew.
		SkipClientIDCheck: true,
		SkipIssuerCheck:   true,
		SkipExpiryCheck:   true,
	})
	return &discovered{verifier: verifier, jwksURL: meta.JWKSURI}, nil
}

// keySet wraps go-oidc's RemoteKeySet to keep what go-oidc flattens to
// text: the key set's own error, so that "provider unreachable" and "bad
// signature" can be told apart, and the verified payload, so that claims of
// the wrong type get a precise reason.
type keySet struct{ remote *oidc.RemoteKeySet }

type keyResultKey struct{}

type keyResult struct {
	err     error
	payload []byte // set once the signature verified
}

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if r, ok := ctx.Value(keyResultKey{}).(*keyResult); ok {
		r.err, r.payload = err, payload
	}
	return payload, err
}

// Verify checks rawToken and returns the identity it proves. Errors are
// *VerifyError; with Reason ReasonScope its Err is a *ScopeError.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (policy.Identity, error) {
	if v.cfgErr != nil {
		return policy.Identity{}, &VerifyError{Reason: ReasonUnavailable, Err: v.cfgErr}
	}
	d := v.provider.Load()
	if d == nil {
		v.mu.Lock()
		err := v.unavailableLocked()
		v.mu.Unlock()
		return policy.Identity{}, &VerifyError{Reason: ReasonUnavailable, Err: err}
	}
	if err := v.checkHeader(rawToken); err != nil {
		return policy.Identity{}, err
	}

	var kr keyResult
	vctx := oidc.ClientContext(context.WithValue(ctx, keyResultKey{}, &kr), v.client)
	_, oidcErr := d.verifier.Verify(vctx, rawToken)
	switch {
	case kr.err != nil && isUnreachable(kr.err):
		return policy.Identity{}, &VerifyError{Reason: ReasonUnavailable,
			Err: &UnavailableError{Issuer: v.cfg.Issuer, Err: fmt.Errorf("fetching keys: %w", kr.err)}}
	case kr.err != nil:
		return policy.Identity{}, refuse(ReasonSignature, "signature does not verify with any key the provider publishes")
	case kr.payload == nil:
		return policy.Identity{}, refuse(ReasonMalformed, "not a valid JWS")
	}
	// The signature verified. go-oidc may still have refused the registered
	// claims' types (a numeric sub, say): the checks below name the reason.
	var claims map[string]any
	if err := json.Unmarshal(kr.payload, &claims); err != nil {
		return policy.Identity{}, refuse(ReasonMalformed, "claims are not a JSON object")
	}
	if err := v.checkRegistered(claims); err != nil {
		return policy.Identity{}, err
	}
	id, err := v.identity(claims)
	if err != nil {
		return policy.Identity{}, err
	}
	if oidcErr != nil {
		return policy.Identity{}, refuse(ReasonClaims, "registered claims have the wrong types")
	}
	if missing := missingScopes(v.cfg.RequiredScopes, grantedScopes(claims)); len(missing) > 0 {
		return policy.Identity{}, &VerifyError{Reason: ReasonScope,
			Err: &ScopeError{Required: slices.Clone(v.cfg.RequiredScopes), Missing: missing}}
	}
	return id, nil
}

// checkHeader refuses what is not a compact JWS with an allowed algorithm
// before any key is looked at: "none", HS* (the public-key-as-HMAC-secret
// confusion) and anything not configured.
func (v *Verifier) checkHeader(raw string) error {
	if raw == "" {
		return refuse(ReasonMalformed, "empty token")
	}
	if len(raw) > maxTokenBytes {
		return refuse(ReasonMalformed, "token longer than %d bytes", maxTokenBytes)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return refuse(ReasonMalformed, "not a compact JWS (%d segments, want 3)", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return refuse(ReasonMalformed, "header is not base64url")
	}
	var hdr struct {
		Alg  string   `json:"alg"`
		Crit []string `json:"crit"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return refuse(ReasonMalformed, "header is not JSON")
	}
	if !slices.Contains(v.cfg.Algorithms, hdr.Alg) {
		return refuse(ReasonAlgorithm, "algorithm %q is not accepted (accepted: %s)", truncate(hdr.Alg, 16), strings.Join(v.cfg.Algorithms, ", "))
	}
	if len(hdr.Crit) > 0 {
		return refuse(ReasonMalformed, "critical header parameters are not supported")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return refuse(ReasonMalformed, "payload is not base64url")
	}
	if !json.Valid(pb) || !strings.HasPrefix(strings.TrimSpace(string(pb)), "{") {
		return refuse(ReasonMalformed, "payload is not a JSON object")
	}
	return nil
}

// checkRegistered checks iss, aud, exp, nbf and iat.
func (v *Verifier) checkRegistered(c map[string]any) error {
	iss, _ := c["iss"].(string)
	if iss != v.cfg.Issuer {
		return refuse(ReasonIssuer, "issuer %q is not %q", truncate(iss, 200), v.cfg.Issuer)
	}
	aud, ok := audience(c["aud"])
	if !ok {
		return refuse(ReasonAudience, "aud is missing or not a string or array of strings")
	}
	if !slices.Contains(aud, v.cfg.Audience) {
		return refuse(ReasonAudience, "token is for %q, not for %q", truncateAll(aud, 5), v.cfg.Audience)
	}
	now := v.now()
	skew := v.cfg.ClockSkew
	exp, ok, err := numericDate(c, "exp")
	switch {
	case err != nil:
		return err
	case !ok:
		return refuse(ReasonClaims, "exp is missing")
	case now.After(exp.Add(skew)):
		return refuse(ReasonExpired, "expired at %s (now %s, skew %s)", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	for _, name := range []string{"nbf", "iat"} {
		t, ok, err := numericDate(c, name)
		if err != nil {
			return err
		}
		if ok && now.Add(skew).Before(t) {
			return refuse(ReasonNotYetValid, "%s is %s (now %s, skew %s)", name, t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
		}
	}
	return nil
}

// identity builds the policy identity from verified claims.
func (v *Verifier) identity(c map[string]any) (policy.Identity, error) {
	sub, err := stringClaim(c, v.cfg.SubjectClaim)
	if err != nil {
		return policy.Identity{}, err
	}
	if sub == "" {
		return policy.Identity{}, refuse(ReasonClaims, "subject claim %q is missing or empty", v.cfg.SubjectClaim)
	}
	email, err := stringClaim(c, v.cfg.EmailClaim)
	if err != nil {
		return policy.Identity{}, err
	}
	groups, err := stringsClaim(c, v.cfg.GroupsClaim)
	if err != nil {
		return policy.Identity{}, err
	}
	jti, err := stringClaim(c, "jti")
	if err != nil {
		return policy.Identity{}, err
	}
	iss, _ := c["iss"].(string)
	// The transcript records who called by these three; a NUL in one could
	// not be recorded as it is (and reads differently in C-based tools).
	for _, f := range []struct{ name, v string }{{v.cfg.SubjectClaim, sub}, {"iss", iss}, {"jti", jti}} {
		if strings.IndexByte(f.v, 0) >= 0 {
			return policy.Identity{}, refuse(ReasonClaims, "the %s claim contains a NUL character", f.name)
		}
	}
	return policy.Identity{
		Subject: sub,
		Email:   email,
		Groups:  groups,
		Claims:  c,
		Issuer:  iss,
		TokenID: jti,
		Method:  "oidc",
	}, nil
}

// isUnreachable reports whether a key set error is the provider not
// answering (as opposed to answering with keys that do not match).
func isUnreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// Fingerprint is a short, non-reversible name for a token, safe to log: the
// first 12 hex digits of its SHA-256.
func Fingerprint(rawToken string) string {
	sum := sha256.Sum256([]byte(rawToken))
	return hex.EncodeToString(sum[:])[:12]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func truncateAll(ss []string, n int) []string {
	out := make([]string, 0, min(len(ss), n))
	for i, s := range ss {
		if i == n {
			out = append(out, "…")
			break
		}
		out = append(out, truncate(s, 200))
	}
	return out
}
