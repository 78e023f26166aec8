package httpkind

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/tools"
)

// KindName is the value of `kind:` for HTTP services.
const KindName = "http"

// Bounds not set by the configuration.
const (
	// DefaultMaxRequestBytes caps the body an agent may send when the
	// resource does not say.
	DefaultMaxRequestBytes = 1 << 20
	// maxRequestBytesLimit is the largest max_request_bytes accepted.
	maxRequestBytesLimit = 64 << 20
	// maxResponseHeaderBytes bounds the response headers airlock reads.
	maxResponseHeaderBytes = 64 << 10
)

// Authentication types (`auth.type`).
const (
	AuthNone          = "none"
	AuthClientCreds   = "oauth2_client_credentials"
	AuthBearer        = "bearer"
	AuthHeader        = "header"
	authStyleBasic    = "basic"
	authStyleInParams = "params"
)

// Sentinel errors. Each is wrapped with what happened.
var (
	// ErrInvalidConfig means a resource's configuration cannot be used.
	ErrInvalidConfig = errors.New("invalid http resource configuration")
	// ErrDestination means the address the service's name resolves to is
	// not one the resource may reach (a private, loopback or link-local
	// address it does not name). It matches tools.ErrRefused.
	ErrDestination error = &refinedError{"destination refused", tools.ErrRefused}
	// ErrNotAllowed means the method or path is not one the resource
	// serves (methods, path_prefixes). It matches tools.ErrRefused.
	ErrNotAllowed error = &refinedError{"not allowed on this resource", tools.ErrRefused}
	// ErrTokenEndpoint means the OAuth2 token endpoint refused or failed to
	// issue a token. It matches tools.ErrBackendUnavailable.
	ErrTokenEndpoint error = &refinedError{"the token endpoint did not issue a token", tools.ErrBackendUnavailable}
)

// refinedError is a sentinel that is also a more general one.
type refinedError struct {
	msg    string
	parent error
}

func (e *refinedError) Error() string { return e.msg }
func (e *refinedError) Unwrap() error { return e.parent }

// Settings are the keys of an http resource, as written in the config
// (decoded strictly by tools.ResourceSpec.DecodeSettings).
type Settings struct {
	// BaseURL is the origin (and optional base path) every request goes
	// to: https, or http on a loopback address only.
	BaseURL string `yaml:"base_url" json:"base_url"`
	// Methods the resource serves; default GET and HEAD.
	Methods []string `yaml:"methods" json:"methods,omitempty"`
	// PathPrefixes, when set, are the only paths (relative to base_url)
	// requests may go to, matched segment by segment: "/v1/users" allows
	// /v1/users and /v1/users/42, not /v1/usersettings.
	PathPrefixes []string `yaml:"path_prefixes" json:"path_prefixes,omitempty"`
	// Headers are sent with every request; the agent cannot override them.
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// ResponseHeaders are the response headers shown to the agent besides
	// the default ones (content-type, content-length, location, ...).
	ResponseHeaders []string `yaml:"response_headers" json:"response_headers,omitempty"`
	// AllowPrivate lists the private, loopback or link-local addresses
	// (single addresses or CIDR prefixes) the service's name may resolve
	// to. A base_url whose host is such an address literal names it.
	AllowPrivate []string `yaml:"allow_private" json:"allow_private,omitempty"`
	// TLS sets the CA and client certificate.
	TLS *TLSSettings `yaml:"tls" json:"tls,omitempty"`
	// Auth is how airlock authenticates requests (none by default).
	Auth *AuthSettings `yaml:"auth" json:"auth,omitempty"`
	// MaxRequestBytes caps the request body (default 1 MiB).
	MaxRequestBytes int64 `yaml:"max_request_bytes" json:"max_request_bytes,omitempty"`
}

// TLSSettings names the files TLS needs, by path.
type TLSSettings struct {
	// CAFile is a PEM bundle of the CAs the server's certificate must
	// chain to, instead of the system's.
	CAFile string `yaml:"ca_file" json:"ca_file,omitempty"`
	// CertFile and KeyFile are airlock's client certificate and key (PEM).
	CertFile string `yaml:"cert_file" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file" json:"key_file,omitempty"`
	// ServerName overrides the name the certificate is verified for.
	ServerName string `yaml:"server_name" json:"server_name,omitempty"`
}

// AuthSettings says how requests are authenticated. Secrets are given by
// reference (`*_env`, `*_file`), never inline.
type AuthSettings struct {
	// Type is none, oauth2_client_credentials, bearer or header.
	Type string `yaml:"type" json:"type"`

	// oauth2_client_credentials
	TokenURL         string `yaml:"token_url" json:"token_url,omitempty"`
	RevocationURL    string `yaml:"revocation_url" json:"revocation_url,omitempty"`
	ClientID         string `yaml:"client_id" json:"client_id,omitempty"`
	ClientSecretEnv  string `yaml:"client_secret_env" json:"client_secret_env,omitempty"`
	ClientSecretFile string `yaml:"client_secret_file" json:"client_secret_file,omitempty"`
	// ClientAuth is how the client authenticates to the token endpoint:
	// basic (HTTP Basic, the default) or params (in the form body).
	ClientAuth string `yaml:"client_auth" json:"client_auth,omitempty"`

	// bearer and header: the token (or header value) by reference.
	TokenEnv  string `yaml:"token_env" json:"token_env,omitempty"`
	TokenFile string `yaml:"token_file" json:"token_file,omitempty"`
	// Header is the header the value goes in (type header), e.g. X-API-Key.
	Header string `yaml:"header" json:"header,omitempty"`
}

// GrantSettings are the http keys of a grant (decoded strictly by
// tools.Grant.DecodeSettings); ttl is the grant's own.
type GrantSettings struct {
	// Scopes and Audience are requested with the client-credentials token.
	Scopes   []string `yaml:"scopes" json:"scopes,omitempty"`
	Audience []string `yaml:"audience" json:"audience,omitempty"`
	// TokenEnv and TokenFile replace the resource's bearer or header
	// secret for this grant (a read-only API key beside a read-write one).
	TokenEnv  string `yaml:"token_env" json:"token_env,omitempty"`
	TokenFile string `yaml:"token_file" json:"token_file,omitempty"`
}

// Option configures the kind.
type Option func(*kind)

// Resolver looks a host name up; net.DefaultResolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// WithResolver sets the resolver service names are looked up with (tests
// inject one that changes its answers); the default is net.DefaultResolver.
func WithResolver(r Resolver) Option { return func(k *kind) { k.resolver = r } }

// WithClock sets the clock token expiry is judged by; default time.Now.
func WithClock(now func() time.Time) Option { return func(k *kind) { k.now = now } }

// NewKind returns the resource kind "http".
func NewKind(opts ...Option) tools.Kind {
	k := &kind{resolver: net.DefaultResolver, now: time.Now}
	for _, o := range opts {
		o(k)
	}
	return k
}

type kind struct {
	resolver Resolver
	now      func() time.Time
}

var _ tools.Kind = (*kind)(nil)

func (*kind) Name() string { return KindName }

func init() { tools.RegisterSettings(KindName, Settings{}, GrantSettings{}) }

// Open validates an HTTP service's configuration, reads its TLS files and
// checks its secret references resolve. It does not contact the service.
func (k *kind) Open(spec tools.ResourceSpec, env tools.Environment) (tools.Resource, error) {
	bad := badFunc(spec.Name)
	for _, f := range spec.ForeignSettings(KindName) {
		return nil, bad(f.Key, "not an http setting (it is %s); http resources take base_url, methods, path_prefixes, headers, response_headers, allow_private, tls, auth, max_request_bytes and grants", f.OwnerPhrase())
	}
	var s Settings
	if err := spec.DecodeSettings(&s); err != nil {
		return nil, fmt.Errorf("resource %s: %w: %w", spec.Name, err, ErrInvalidConfig)
	}
	grants := make(map[string]GrantSettings, len(spec.Grants))
	for name, g := range spec.Grants {
		var gs GrantSettings
		if err := g.DecodeSettings(&gs); err != nil {
			return nil, fmt.Errorf("resource %s: grants.%s.%w: %w", spec.Name, name, err, ErrInvalidConfig)
		}
		grants[name] = gs
	}
	return k.open(spec, s, grants, env)
}

func badFunc(name string) func(key, format string, args ...any) error {
	return func(key, format string, args ...any) error {
		return fmt.Errorf("resource %s: %s: %s: %w", name, key, fmt.Sprintf(format, args...), ErrInvalidConfig)
	}
}

// open builds the resource from decoded settings.
func (k *kind) open(spec tools.ResourceSpec, s Settings, grantSettings map[string]GrantSettings, env tools.Environment) (*Resource, error) {
	bad := badFunc(spec.Name)
	base, err := parseBaseURL(s.BaseURL)
	if err != nil {
		return nil, bad("base_url", "%v", err)
	}
	r := &Resource{
		spec:     spec,
		settings: s,
		base:     base,
		env:      env,
		resolver: k.resolver,
		now:      k.now,
		grants:   map[string]*grant{},
		leases:   map[string]*Credential{},
		maxBody:  DefaultMaxRequestBytes,
	}

	r.methods = map[string]bool{http.MethodGet: true, http.MethodHead: true}
	if len(s.Methods) > 0 {
		r.methods = map[string]bool{}
		for i, m := range s.Methods {
			u := strings.ToUpper(strings.TrimSpace(m))
			if !knownMethods[u] {
				return nil, bad(fmt.Sprintf("methods[%d]", i), "%q is not one of %s", m, strings.Join(methodList, ", "))
			}
			r.methods[u] = true
		}
	}
	for i, p := range s.PathPrefixes {
		segs, err := splitPath(p)
		if err != nil {
			return nil, bad(fmt.Sprintf("path_prefixes[%d]", i), "%q: %v", p, err)
		}
		r.prefixes = append(r.prefixes, segs)
	}
	r.headers = http.Header{}
	for name, v := range s.Headers {
		if err := checkHeader(name, v); err != nil {
			return nil, bad("headers."+name, "%v", err)
		}
		switch canon := http.CanonicalHeaderKey(name); {
		case canon == "Host" || isHopByHop(canon):
			return nil, bad("headers."+name, "airlock sets %s itself", canon)
		default:
			r.headers.Set(canon, v)
		}
	}
	r.showHeaders = slices.Clone(defaultResponseHeaders)
	for i, h := range s.ResponseHeaders {
		if !validHeaderName(h) {
			return nil, bad(fmt.Sprintf("response_headers[%d]", i), "%q is not a header name", h)
		}
		canon := http.CanonicalHeaderKey(h)
		if hiddenResponseHeaders[canon] {
			return nil, bad(fmt.Sprintf("response_headers[%d]", i), "%s is never shown to agents", canon)
		}
		r.showHeaders = append(r.showHeaders, canon)
	}
	allow, err := parseAllowPrivate(s.AllowPrivate, base)
	if err != nil {
		return nil, bad("allow_private", "%v", err)
	}
	r.allow = allow
	if s.MaxRequestBytes < 0 || s.MaxRequestBytes > maxRequestBytesLimit {
		return nil, bad("max_request_bytes", "%d is out of range (1 to %d)", s.MaxRequestBytes, maxRequestBytesLimit)
	} else if s.MaxRequestBytes > 0 {
		r.maxBody = s.MaxRequestBytes
	}

	tlsConfig, err := buildTLS(s.TLS, env, bad)
	if err != nil {
		return nil, err
	}
	if base.Scheme == "http" && s.TLS != nil {
		return nil, bad("tls", "base_url is http: TLS settings need an https base_url")
	}
	auth, err := checkAuth(s.Auth, env, bad)
	if err != nil {
		return nil, err
	}
	r.auth = auth

	if len(spec.Grants) == 0 {
		return nil, bad("grants", "an http resource needs at least one grant, e.g. reader: {ttl: 10m} (with scopes: [...] for oauth2_client_credentials)")
	}
	names := make([]string, 0, len(spec.Grants))
	for name := range spec.Grants {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g, err := checkGrant(name, spec.Grants[name], grantSettings[name], auth, env, bad)
		if err != nil {
			return nil, err
		}
		r.grants[name] = g
	}

	r.transport = newTransport(r, tlsConfig)
	return r, nil
}

// parseBaseURL accepts https URLs, and http ones on loopback only, with no
// user info, query or fragment.
func parseBaseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("required: the service's URL, e.g. https://api.example.com/v1/")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q does not parse as a URL", raw)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%q: the scheme must be https (or http on loopback)", raw)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q has no host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("%q carries user info; give credentials with auth instead", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("%q has a query or fragment; a base URL is an origin and a path", raw)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("%q: plain http is only accepted on loopback (127.0.0.1, ::1, localhost); use https", raw)
	}
	if strings.IndexFunc(u.Hostname(), func(r rune) bool { return r >= 0x80 }) >= 0 {
		// net/http dials and names (SNI, Host) the punycode form while the
		// resolver would be asked for this one: write the one the wire uses.
		return nil, fmt.Errorf("%q: write an internationalised host name in its ASCII form (xn--...)", raw)
	}
	if _, err := splitPath(u.EscapedPath()); err != nil && u.Path != "" {
		return nil, fmt.Errorf("%q: its path %v", raw, err)
	}
	return &url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host), Path: strings.TrimSuffix(u.EscapedPath(), "/")}, nil
}

// port is the port requests go to (the scheme's default when the base URL
// names none).
func (r *Resource) port() string {
	if p := r.base.Port(); p != "" {
		return p
	}
	if r.base.Scheme == "https" {
		return "443"
	}
	return "80"
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

func buildTLS(s *TLSSettings, env tools.Environment, bad func(key, format string, args ...any) error) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s == nil {
		return cfg, nil
	}
	if s.CAFile != "" {
		pem, err := readFile(env, s.CAFile)
		if err != nil {
			return nil, bad("tls.ca_file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, bad("tls.ca_file", "%s holds no PEM certificate", s.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case (s.CertFile == "") != (s.KeyFile == ""):
		return nil, bad("tls", "cert_file and key_file go together")
	case s.CertFile != "":
		certPEM, err := readFile(env, s.CertFile)
		if err != nil {
			return nil, bad("tls.cert_file", "%v", err)
		}
		keyPEM, err := readFile(env, s.KeyFile)
		if err != nil {
			return nil, bad("tls.key_file", "%v", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// The parser's message can quote key material: say which files.
			return nil, bad("tls", "%s and %s are not a matching PEM certificate and key", s.CertFile, s.KeyFile)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	cfg.ServerName = s.ServerName
	return cfg, nil
}

func readFile(env tools.Environment, path string) ([]byte, error) {
	data, err := env.ReadFile(path)
	if err != nil {
		var pe interface{ Unwrap() error }
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			err = pe.Unwrap()
		}
		return nil, fmt.Errorf("cannot read %s: %v", path, err)
	}
	return data, nil
}

// secretRef is a secret given by reference: an environment variable or a
// file (read at each mint, so a rotated file is picked up).
type secretRef struct {
	env, file string
}

func (s secretRef) set() bool { return s.env != "" || s.file != "" }

func (s secretRef) String() string {
	if s.env != "" {
		return "$" + s.env
	}
	return s.file
}

// resolve reads the secret. Errors name the reference, never the value.
func (s secretRef) resolve(env tools.Environment) (tools.Secret, error) {
	var v string
	switch {
	case s.env != "":
		val, ok := env.Getenv(s.env)
		if !ok || strings.TrimSpace(val) == "" {
			return tools.Secret{}, fmt.Errorf("environment variable %s is not set", s.env)
		}
		v = val
	case s.file != "":
		data, err := readFile(env, s.file)
		if err != nil {
			return tools.Secret{}, err
		}
		v = string(data)
	default:
		return tools.Secret{}, errors.New("no secret reference")
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return tools.Secret{}, fmt.Errorf("%s is empty", s)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return tools.Secret{}, fmt.Errorf("%s holds more than one line", s)
	}
	return tools.NewSecret(v), nil
}

func oneRef(key, envKey, fileKey, env, file string, bad func(key, format string, args ...any) error) (secretRef, error) {
	if env != "" && file != "" {
		return secretRef{}, bad(key, "set one of %s and %s, not both", envKey, fileKey)
	}
	return secretRef{env: env, file: file}, nil
}

// authConfig is the validated auth section.
type authConfig struct {
	typ string
	// oauth2_client_credentials
	tokenURL, revocationURL *url.URL
	clientID                string
	clientSecret            secretRef
	inParams                bool
	// bearer, header
	token  secretRef
	header string // canonical header name the secret goes in
}

func checkAuth(s *AuthSettings, env tools.Environment, bad func(key, format string, args ...any) error) (*authConfig, error) {
	if s == nil || s.Type == "" || s.Type == AuthNone {
		if s != nil && (s.TokenURL != "" || s.ClientID != "" || s.TokenEnv != "" || s.TokenFile != "" || s.Header != "") {
			return nil, bad("auth.type", "required when other auth keys are set: oauth2_client_credentials, bearer or header")
		}
		return &authConfig{typ: AuthNone}, nil
	}
	a := &authConfig{typ: s.Type}
	switch s.Type {
	case AuthClientCreds:
		if s.TokenEnv != "" || s.TokenFile != "" || s.Header != "" {
			return nil, bad("auth", "token_env, token_file and header are for bearer and header auth; oauth2_client_credentials takes token_url, client_id, client_secret_env | client_secret_file, revocation_url, client_auth")
		}
		var err error
		if a.tokenURL, err = endpointURL(s.TokenURL); err != nil {
			return nil, bad("auth.token_url", "%v", err)
		}
		if s.RevocationURL != "" {
			if a.revocationURL, err = endpointURL(s.RevocationURL); err != nil {
				return nil, bad("auth.revocation_url", "%v", err)
			}
		}
		if strings.TrimSpace(s.ClientID) == "" {
			return nil, bad("auth.client_id", "required for oauth2_client_credentials")
		}
		a.clientID = s.ClientID
		if a.clientSecret, err = oneRef("auth", "client_secret_env", "client_secret_file", s.ClientSecretEnv, s.ClientSecretFile, bad); err != nil {
			return nil, err
		}
		if !a.clientSecret.set() {
			return nil, bad("auth", "client_secret_env or client_secret_file is required: the client secret, by reference")
		}
		if _, err := a.clientSecret.resolve(env); err != nil {
			return nil, bad("auth.client_secret", "%v", err)
		}
		switch s.ClientAuth {
		case "", authStyleBasic:
		case authStyleInParams:
			a.inParams = true
		default:
			return nil, bad("auth.client_auth", "%q is not basic or params", s.ClientAuth)
		}
	case AuthBearer, AuthHeader:
		if s.TokenURL != "" || s.RevocationURL != "" || s.ClientID != "" || s.ClientSecretEnv != "" || s.ClientSecretFile != "" || s.ClientAuth != "" {
			return nil, bad("auth", "%s auth takes token_env | token_file%s; the other keys are for oauth2_client_credentials", s.Type, map[bool]string{true: " and header"}[s.Type == AuthHeader])
		}
		var err error
		if a.token, err = oneRef("auth", "token_env", "token_file", s.TokenEnv, s.TokenFile, bad); err != nil {
			return nil, err
		}
		if a.token.set() {
			if _, err := a.token.resolve(env); err != nil {
				return nil, bad("auth.token", "%v", err)
			}
		}
		a.header = "Authorization"
		if s.Type == AuthHeader {
			if !validHeaderName(s.Header) {
				return nil, bad("auth.header", "required: the header the secret goes in, e.g. X-API-Key")
			}
			a.header = http.CanonicalHeaderKey(s.Header)
			if a.header == "Host" || isHopByHop(a.header) {
				return nil, bad("auth.header", "%s cannot carry a credential", a.header)
			}
		} else if s.Header != "" {
			return nil, bad("auth.header", "bearer auth always uses Authorization; use type header for another header")
		}
	default:
		return nil, bad("auth.type", "%q is not one of none, oauth2_client_credentials, bearer, header", s.Type)
	}
	return a, nil
}

// endpointURL checks an OAuth2 endpoint: https, or http on loopback.
func endpointURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("required: the provider's endpoint URL")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		return nil, fmt.Errorf("%q is not an https URL", raw)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("%q: plain http is only accepted on loopback; use https", raw)
	}
	return u, nil
}

// grant is a validated grant.
type grant struct {
	ttl      time.Duration
	scopes   []string
	audience []string
	token    secretRef // bearer/header override
}

func checkGrant(name string, g tools.Grant, s GrantSettings, auth *authConfig, env tools.Environment, bad func(key, format string, args ...any) error) (*grant, error) {
	key := "grants." + name
	switch {
	case len(g.Roles) > 0, g.Access != "", len(g.Principals) > 0, g.PermitPTY, g.ServiceAccount != "", g.Impersonate != nil:
		return nil, bad(key, "http grants take ttl, scopes and audience (oauth2_client_credentials) or token_env | token_file (bearer, header)")
	case g.TTL <= 0:
		return nil, bad(key+".ttl", "required: how long a lease lives, e.g. 10m")
	}
	out := &grant{ttl: g.TTL, scopes: slices.Clone(s.Scopes), audience: slices.Clone(s.Audience)}
	for i, sc := range s.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n\"\\") {
			return nil, bad(fmt.Sprintf("%s.scopes[%d]", key, i), "%q is not a scope token", sc)
		}
	}
	for i, a := range s.Audience {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			return nil, bad(fmt.Sprintf("%s.audience[%d]", key, i), "%q is not an audience", a)
		}
	}
	if (len(s.Scopes) > 0 || len(s.Audience) > 0) && auth.typ != AuthClientCreds {
		return nil, bad(key, "scopes and audience need auth.type oauth2_client_credentials")
	}
	var err error
	if out.token, err = oneRef(key, "token_env", "token_file", s.TokenEnv, s.TokenFile, bad); err != nil {
		return nil, err
	}
	if out.token.set() {
		if auth.typ != AuthBearer && auth.typ != AuthHeader {
			return nil, bad(key, "token_env and token_file need auth.type bearer or header")
		}
		if _, err := out.token.resolve(env); err != nil {
			return nil, bad(key+".token", "%v", err)
		}
	} else if (auth.typ == AuthBearer || auth.typ == AuthHeader) && !auth.token.set() {
		return nil, bad(key, "needs a secret: set auth.token_env | auth.token_file, or token_env | token_file on the grant")
	}
	return out, nil
}

// Resource is one configured HTTP service: its origin, what may be asked
// of it, how to authenticate, and the transport every request goes
// through (pinned addresses, no proxy, no redirects).
type Resource struct {
	spec     tools.ResourceSpec
	settings Settings
	base     *url.URL
	env      tools.Environment
	resolver Resolver
	now      func() time.Time

	methods     map[string]bool
	prefixes    [][]string
	headers     http.Header
	showHeaders []string
	allow       []netip.Prefix
	maxBody     int64
	auth        *authConfig
	grants      map[string]*grant
	transport   *http.Transport

	mu     sync.Mutex
	leases map[string]*Credential // lease id → credential, for Revoke
}

var _ tools.Resource = (*Resource)(nil)

// Spec is the configuration the resource was opened with.
func (r *Resource) Spec() tools.ResourceSpec { return r.spec }

// Origin is scheme://host:port of the service.
func (r *Resource) Origin() string { return r.base.Scheme + "://" + r.base.Host }

// Reusable is true: a token serves every call of the same identity and
// grant until the lease expires.
func (r *Resource) Reusable() bool { return true }

// Orphans is nil: tokens expire by themselves.
func (r *Resource) Orphans(context.Context) ([]string, error) { return nil, nil }

// Close drops idle connections.
func (r *Resource) Close() { r.transport.CloseIdleConnections() }

// parseAllowPrivate reads allow_private and adds the base URL's host when
// it is an address literal: naming the address is allowing it.
func parseAllowPrivate(list []string, base *url.URL) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	host := base.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	} else if strings.EqualFold(host, "localhost") {
		out = append(out, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
	}
	return out, nil
}
