package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// refreshMargin: a cached token with less than this left is refreshed
// before it is handed out, so that it does not expire mid-call.
const refreshMargin = 2 * time.Minute

// LoginConfig configures `airlock login` and the token cache behind it.
//
// With a ClientSecret, Login uses the client credentials grant (a machine
// identity, such as an agent in CI); without one, the device authorization
// grant (RFC 8628), where a person confirms a code in a browser.
type LoginConfig struct {
	// Issuer is the provider's issuer URL; endpoints come from its discovery document.
	Issuer string
	// ClientID and ClientSecret identify the OAuth client airlock's CLI uses.
	ClientID     string
	ClientSecret string
	// Scopes to request ("openid" and "offline_access" are added for the
	// device grant so that a refresh token is issued).
	Scopes []string
	// Audience is airlock's resource URL. It is sent as RFC 8707 "resource"
	// and as "audience" (the parameter Hydra and Auth0 read).
	Audience string
	// ExtraParams are added to the token (and device authorization) requests.
	ExtraParams url.Values
	// CachePath is where the token is cached; default DefaultTokenCachePath().
	CachePath string
	// Out receives the device grant's instructions; default os.Stderr.
	Out io.Writer
	// HTTPClient is used for discovery and token requests; default http.DefaultClient.
	HTTPClient *http.Client
}

// cachedToken is the token cache file: the token and what it was obtained
// for, so that a changed configuration is not served an old token.
type cachedToken struct {
	Issuer   string        `json:"issuer"`
	ClientID string        `json:"client_id"`
	Audience string        `json:"audience,omitempty"`
	Scopes   []string      `json:"scopes,omitempty"`
	Token    *oauth2.Token `json:"token"`
}

// DefaultTokenCachePath is os.UserConfigDir()/airlock/token.json.
func DefaultTokenCachePath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("locating the user config dir: %w", err)
	}
	return filepath.Join(dir, "airlock", "token.json"), nil
}

// Login obtains a token (device authorization grant for people, client
// credentials for machines) and caches it with mode 0600.
func Login(ctx context.Context, cfg LoginConfig) (*oauth2.Token, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("login: issuer and client ID are required")
	}
	ctx = cfg.context(ctx)
	endpoint, err := discoverEndpoint(ctx, cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var tok *oauth2.Token
	if cfg.ClientSecret != "" {
		tok, err = cfg.clientCredentials(endpoint).Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("client credentials grant: %w", scrub(err))
		}
	} else {
		tok, err = cfg.deviceGrant(ctx, endpoint)
		if err != nil {
			return nil, err
		}
	}
	if err := cfg.save(tok); err != nil {
		return nil, err
	}
	return tok, nil
}

// CachedToken returns the cached token, refreshed first when it expires
// within two minutes: with the refresh token (device grant) or a new client
// credentials grant. ErrNotLoggedIn when there is nothing usable.
func CachedToken(ctx context.Context, cfg LoginConfig) (*oauth2.Token, error) {
	path, err := cfg.cachePath()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotLoggedIn
	}
	if err != nil {
		return nil, fmt.Errorf("reading the token cache: %w", err)
	}
	var c cachedToken
	if err := json.Unmarshal(b, &c); err != nil || c.Token == nil {
		return nil, fmt.Errorf("token cache %s is corrupt: %w", path, ErrNotLoggedIn)
	}
	if c.Issuer != cfg.Issuer || c.ClientID != cfg.ClientID || c.Audience != cfg.Audience {
		return nil, fmt.Errorf("the cached token is for another issuer, client or audience: %w", ErrNotLoggedIn)
	}
	if c.Token.AccessToken != "" && time.Until(c.Token.Expiry) > refreshMargin {
		return c.Token, nil
	}

	ctx = cfg.context(ctx)
	endpoint, err := discoverEndpoint(ctx, cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var tok *oauth2.Token
	switch {
	case cfg.ClientSecret != "":
		tok, err = cfg.clientCredentials(endpoint).Token(ctx)
	case c.Token.RefreshToken != "":
		// An empty access token makes the source refresh now.
		tok, err = cfg.oauth2Config(endpoint).TokenSource(ctx, &oauth2.Token{RefreshToken: c.Token.RefreshToken}).Token()
	default:
		return nil, fmt.Errorf("the cached token expires and cannot be refreshed: %w", ErrNotLoggedIn)
	}
	if err != nil {
		return nil, fmt.Errorf("refreshing the cached token: %w", scrub(err))
	}
	if err := cfg.save(tok); err != nil {
		return nil, err
	}
	return tok, nil
}

func (cfg LoginConfig) context(ctx context.Context) context.Context {
	if cfg.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, cfg.HTTPClient)
		ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	}
	return ctx
}

func discoverEndpoint(ctx context.Context, issuer string) (oauth2.Endpoint, error) {
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return oauth2.Endpoint{}, fmt.Errorf("discovering %s: %w", issuer, err)
	}
	return p.Endpoint(), nil
}

func (cfg LoginConfig) params() url.Values {
	v := url.Values{}
	if cfg.Audience != "" {
		v.Set("resource", cfg.Audience)
		v.Set("audience", cfg.Audience)
	}
	for k, vs := range cfg.ExtraParams {
		v[k] = slices.Clone(vs)
	}
	return v
}

func (cfg LoginConfig) clientCredentials(ep oauth2.Endpoint) *clientcredentials.Config {
	return &clientcredentials.Config{
		ClientID:       cfg.ClientID,
		ClientSecret:   cfg.ClientSecret,
		TokenURL:       ep.TokenURL,
		Scopes:         cfg.Scopes,
		EndpointParams: cfg.params(),
		AuthStyle:      ep.AuthStyle,
	}
}

func (cfg LoginConfig) oauth2Config(ep oauth2.Endpoint) *oauth2.Config {
	scopes := slices.Clone(cfg.Scopes)
	for _, s := range []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess} {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return &oauth2.Config{ClientID: cfg.ClientID, Endpoint: ep, Scopes: scopes}
}

func (cfg LoginConfig) deviceGrant(ctx context.Context, ep oauth2.Endpoint) (*oauth2.Token, error) {
	if ep.DeviceAuthURL == "" {
		return nil, fmt.Errorf("%s does not offer the device authorization grant (no device_authorization_endpoint); use a client secret for a machine identity, or a token from your provider in %s", cfg.Issuer, TokenEnv)
	}
	oc := cfg.oauth2Config(ep)
	var opts []oauth2.AuthCodeOption
	for k, vs := range cfg.params() {
		for _, v := range vs {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	da, err := oc.DeviceAuth(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("device authorization: %w", scrub(err))
	}
	out := cfg.Out
	if out == nil {
		out = os.Stderr
	}
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "To sign in to airlock, open %s\nand check that it shows the code %s\n", da.VerificationURIComplete, da.UserCode)
	} else {
		fmt.Fprintf(out, "To sign in to airlock, open %s\nand enter the code %s\n", da.VerificationURI, da.UserCode)
	}
	tok, err := oc.DeviceAccessToken(ctx, da, opts...)
	if err != nil {
		return nil, fmt.Errorf("waiting for the device code to be confirmed: %w", scrub(err))
	}
	return tok, nil
}

func (cfg LoginConfig) cachePath() (string, error) {
	if cfg.CachePath != "" {
		return cfg.CachePath, nil
	}
	return DefaultTokenCachePath()
}

// save writes the cache atomically, readable by the user only.
func (cfg LoginConfig) save(tok *oauth2.Token) error {
	path, err := cfg.cachePath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating the token cache dir: %w", err)
	}
	b, err := json.MarshalIndent(cachedToken{Issuer: cfg.Issuer, ClientID: cfg.ClientID, Audience: cfg.Audience, Scopes: cfg.Scopes, Token: tok}, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".token-*.json")
	if err != nil {
		return fmt.Errorf("writing the token cache: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("writing the token cache: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing the token cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the token cache: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing the token cache: %w", err)
	}
	return nil
}

// scrub keeps an OAuth error's code and description and drops the raw
// response body, which on some providers echoes request parameters.
func scrub(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := ""
		if re.Response != nil {
			status = re.Response.Status
		}
		if re.ErrorCode != "" {
			return fmt.Errorf("%s: %s %s", status, re.ErrorCode, re.ErrorDescription)
		}
		return fmt.Errorf("token endpoint answered %s", status)
	}
	return err
}
