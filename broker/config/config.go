// Package config loads and validates airlock's YAML configuration.
//
// Loading is strict: an unknown key, a value of the wrong type or a setting
// that makes no sense for its resource kind fails the load with an error that
// names the key, its line, and what would be valid. Secrets are never in the
// file itself: resources name environment variables (`*_env`) or files
// (`*_file`) that hold them, and the backends resolve those through an
// Environment.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/tools"
)

//go:embed defaults.yaml
var defaultsYAML []byte

// Defaults returns the embedded default configuration text.
func Defaults() []byte { return bytes.Clone(defaultsYAML) }

// Auth modes.
const (
	AuthNone = "none"
	AuthOIDC = "oidc"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the address `airlock serve` listens on; /mcp is the MCP
	// endpoint. `airlock stdio` ignores it.
	Listen string `yaml:"listen"`
	// PublicURL is the URL clients use to reach /mcp (for OAuth metadata).
	PublicURL string `yaml:"public_url"`
	// Store is where leases, approvals and transcripts live: sqlite://PATH,
	// or postgres://… for several replicas (its password named by the
	// password_env or password_file query parameter, never written in it).
	Store string `yaml:"store"`
	// Transcripts configures the transcript's signed checkpoints.
	Transcripts Transcripts `yaml:"transcripts"`
	// Policy is the policy file, relative to the config file.
	Policy string `yaml:"policy"`
	// Identity is who `airlock stdio` runs as when no token is given.
	Identity  *LocalIdentity `yaml:"identity"`
	Auth      Auth           `yaml:"auth"`
	Approvals Approvals      `yaml:"approvals"`
	UI        *UI            `yaml:"ui"`
	Limits    Limits         `yaml:"limits"`
	HTTP      HTTP           `yaml:"http"`
	Leases    Leases         `yaml:"leases"`
	Masking   masking.Config `yaml:"masking"`
	Log       Log            `yaml:"log"`

	Resources []tools.ResourceSpec `yaml:"resources"`

	// Dir is the directory relative paths are resolved against (the config
	// file's directory). Not read from YAML.
	Dir string `yaml:"-"`
	// Source names the file the config came from, for messages.
	Source string `yaml:"-"`

	file *ast.File // the parsed file, for the lines of keys
}

// LocalIdentity is a configured identity for local, single-user setups.
type LocalIdentity struct {
	Subject string   `yaml:"subject"`
	Email   string   `yaml:"email"`
	Groups  []string `yaml:"groups"`
}

// Auth says how callers are identified.
type Auth struct {
	// Mode is "none" (loopback only, explicit) or "oidc".
	Mode string `yaml:"mode"`
	// OIDC configures bearer-token verification (mode oidc).
	OIDC *authn.OIDCConfig `yaml:"oidc"`
	// CLIClientID is the OAuth client `airlock login` uses, and `airlock
	// stdio` refreshes the cached token with.
	CLIClientID string `yaml:"cli_client_id"`
}

// Approvals configures how calls held by `approve` rules reach humans.
type Approvals struct {
	// Webhooks receive each new approval, signed (see docs/approvals.md).
	Webhooks []approval.WebhookConfig `yaml:"webhooks"`
	// Wait is how long a held call waits for a decision before it answers
	// "pending"; Expire how long an approval may be decided and then used.
	Wait   time.Duration `yaml:"wait"`
	Expire time.Duration `yaml:"expire"`
}

// UI configures the web pages for approvers and reviewers (/ui), which need
// auth.mode oidc: people log in with the same provider.
type UI struct {
	// ClientID and the secret identify the UI's confidential OAuth client
	// (redirect URI: <public_url origin>/ui/callback).
	ClientID         string `yaml:"client_id"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// SessionKeyEnv names 32 bytes, base64, that seal session cookies; every
	// replica needs the same. Unset: a random key per process.
	SessionKeyEnv string `yaml:"session_key_env"`
	// ReviewersGroup may read every transcript; others see their own calls
	// and those they were asked to approve.
	ReviewersGroup string `yaml:"reviewers_group"`
}

// Limits are the defaults and ceilings for every execution; a policy rule
// or the agent may ask for less, never for more.
type Limits struct {
	MaxRows  int           `yaml:"max_rows"`
	MaxBytes int64         `yaml:"max_bytes"`
	Timeout  time.Duration `yaml:"timeout"`
}

// HTTP bounds what `airlock serve` accepts and keeps on /mcp and the JSON
// API: MCP sessions (how many, for how long), request sizes, and the origins
// browsers may call /mcp from. docs/config.md gives the reason for each
// default.
type HTTP struct {
	// MaxSessions bounds the MCP sessions kept at once, all callers
	// together; MaxSessionsPerIdentity those of one caller.
	MaxSessions            int `yaml:"max_sessions"`
	MaxSessionsPerIdentity int `yaml:"max_sessions_per_identity"`
	// SessionIdleTimeout ends a session that made no request and held no
	// open stream for this long.
	SessionIdleTimeout time.Duration `yaml:"session_idle_timeout"`
	// MaxRequestBytes bounds one request body to /mcp; MaxInitializeBytes
	// one initialize request, where everything a session keeps from its
	// client (clientInfo, capabilities) comes from; MaxAPIRequestBytes one
	// request body to /api and /ui.
	MaxRequestBytes    int64 `yaml:"max_request_bytes"`
	MaxInitializeBytes int64 `yaml:"max_initialize_bytes"`
	MaxAPIRequestBytes int64 `yaml:"max_api_request_bytes"`
	// AllowedOrigins are origins (scheme://host[:port]) browsers may call
	// /mcp from besides public_url's and the listen address's own.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// Leases tunes credential leases.
type Leases struct {
	// ReuseMargin is the fraction of a lease's ttl that must remain for it to
	// be reused by another call (0.5: reuse while more than half is left).
	ReuseMargin float64 `yaml:"reuse_margin"`
	// SweepInterval is how often expired leases are revoked.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// HeartbeatInterval is how often a replica refreshes its heartbeat in
	// the store and looks for replicas that stopped; HeartbeatTimeout is
	// how long after its last heartbeat a stopped replica's leases are
	// revoked (docs/operations.md).
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	HeartbeatTimeout  time.Duration `yaml:"heartbeat_timeout"`
}

// Transcripts configures checkpoints of the transcript's chain head: every
// CheckpointInterval a checkpoint, signed with the checkpoint key when one
// is set, goes to the store and the log, and `airlock transcripts verify`
// checks the chain against the latest one (docs/transcripts.md).
type Transcripts struct {
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// CheckpointKeyEnv or CheckpointKeyFile names at least 32 bytes that
	// sign checkpoints (HMAC-SHA256); every replica needs the same.
	CheckpointKeyEnv  string `yaml:"checkpoint_key_env"`
	CheckpointKeyFile string `yaml:"checkpoint_key_file"`
	// CheckpointWebhook, when set, receives each new checkpoint, signed,
	// through the store's webhook outbox (at least once, by one replica).
	CheckpointWebhook *CheckpointWebhook `yaml:"checkpoint_webhook"`
}

// CheckpointWebhook is the receiver of transcript checkpoints: a URL and
// the secret that signs deliveries, as for approval webhooks.
type CheckpointWebhook struct {
	URL        string `yaml:"url"`
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
}

// Log configures logging (to stderr).
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Error is a configuration error tied to a key and, where known, a line.
type Error struct {
	Source string
	Key    string // a YAML path such as resources[1].grants.readonly.ttl
	Line   int
	Msg    string
}

func (e *Error) Error() string {
	loc := e.Source
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
}

// Errors is every error found in one config file, in the order of their
// lines. Its text is one error per line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Source != es[j].Source {
			return es[i].Source < es[j].Source
		}
		return es[i].Line < es[j].Line
	})
	return es
}

// Load reads a config file, applies the embedded defaults under it and
// validates the result. Any error fails the load; the error is an Errors
// listing every problem found.
func Load(path string) (*Config, error) {
	cfg, errs := Check(path)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// Check reads a config file as Load does, and returns what it could read
// together with every error found, for `airlock config check`. The config is
// nil only when the file cannot be read or is not YAML at all. Check resolves
// no secret reference and contacts nothing.
func Check(path string) (*Config, Errors) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{Source: path, Msg: fmt.Sprintf("cannot read the config file: %v", pathCause(err))}}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, Errors{{Source: path, Msg: err.Error()}}
	}
	return parse(data, path, filepath.Dir(abs))
}

// Parse parses config text. source is the file path (its directory anchors
// relative paths) or a label such as "<embedded defaults>".
func Parse(data []byte, source string) (*Config, error) {
	cfg, errs := parse(data, source, filepath.Dir(source))
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

func parse(data []byte, source, dir string) (*Config, Errors) {
	var cfg Config
	if err := yaml.UnmarshalWithOptions(defaultsYAML, &cfg, yaml.Strict()); err != nil {
		return nil, Errors{{Source: "<embedded defaults>", Msg: fmt.Sprintf("do not parse (a bug): %v", err)}}
	}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, Errors{yamlError(source, err)}
	}
	cfg.Source = source
	cfg.Dir = dir
	cfg.file = file
	var body ast.Node
	for _, doc := range file.Docs {
		if doc.Body == nil {
			continue
		}
		if body != nil {
			return nil, Errors{{Source: source, Line: nodeLine(doc.Body), Msg: "more than one YAML document (---); put everything in one"}}
		}
		body = doc.Body
	}
	d := &decoder{source: source, anchors: map[string]ast.Node{}}
	if body != nil {
		d.collectAnchors(body)
		d.decode(body, reflect.ValueOf(&cfg).Elem(), "")
	}
	// The built-in masking profiles are a base the file extends; a profile
	// of the same name in the file replaces the built-in one.
	cfg.Masking = mergeMasking(masking.DefaultConfig(), cfg.Masking)
	errs := Errors(d.errs)
	// A value that did not decode kept its default, or stayed empty: what
	// validation says about it would repeat the same mistake.
	for _, e := range cfg.validate() {
		if !slices.ContainsFunc(d.errs, func(de *Error) bool { return de.Key == e.Key }) {
			errs = append(errs, e)
		}
	}
	// Files the config names are relative to the config file, wherever
	// airlock runs from.
	for i := range cfg.Resources {
		r := &cfg.Resources[i]
		for _, p := range []*string{&r.AdminDSNFile, &r.KnownHostsFile, &r.CAKeyFile, &r.KubeconfigFile} {
			*p = cfg.Path(*p)
		}
	}
	cfg.Masking.HashKeyFile = cfg.Path(cfg.Masking.HashKeyFile)
	cfg.Transcripts.CheckpointKeyFile = cfg.Path(cfg.Transcripts.CheckpointKeyFile)
	if w := cfg.Transcripts.CheckpointWebhook; w != nil {
		w.SecretFile = cfg.Path(w.SecretFile)
	}
	if cfg.UI != nil {
		cfg.UI.ClientSecretFile = cfg.Path(cfg.UI.ClientSecretFile)
	}
	for i := range cfg.Approvals.Webhooks {
		cfg.Approvals.Webhooks[i].SecretFile = cfg.Path(cfg.Approvals.Webhooks[i].SecretFile)
	}
	return &cfg, errs.sorted()
}

// yamlError turns a go-yaml syntax error into an Error with its line.
func yamlError(source string, err error) *Error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		line := 0
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			line = tk.Position.Line
		}
		return &Error{Source: source, Line: line, Msg: "not valid YAML: " + ye.GetMessage()}
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return &Error{Source: source, Msg: "not valid YAML: " + msg}
}

// pathCause strips an *fs.PathError to its cause: the path is already in
// the message.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func mergeMasking(base, file masking.Config) masking.Config {
	out := file
	if out.Profiles == nil {
		out.Profiles = map[string]masking.ProfileConfig{}
	}
	for name, p := range base.Profiles {
		if _, ok := out.Profiles[name]; !ok {
			out.Profiles[name] = p
		}
	}
	return out
}

// validate checks what the YAML decoder cannot: values, references and
// combinations.
func (c *Config) validate() Errors {
	var errs Errors
	fail := func(key, format string, args ...any) {
		errs = append(errs, c.errorAt(key, fmt.Sprintf(format, args...)))
	}

	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			fail("listen", "%q is not host:port (for example 127.0.0.1:8080)", c.Listen)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fail("public_url", "%q is not an http(s) URL (for example https://airlock.example.com/mcp)", c.PublicURL)
		}
	}
	c.validateStore(fail)
	switch c.Auth.Mode {
	case AuthNone:
	case AuthOIDC:
		if c.Auth.OIDC == nil {
			fail("auth.oidc", "is required with auth.mode oidc: set at least issuer and audience")
		} else if err := c.Auth.OIDC.CheckAndSetDefaults(); err != nil {
			key, msg, _ := strings.Cut(err.Error(), ": ")
			if !strings.HasPrefix(key, "auth.oidc") {
				key, msg = "auth.oidc", err.Error()
			}
			if k, _, ok := strings.Cut(key, " "); ok {
				key, msg = k, strings.TrimPrefix(err.Error(), k+" ")
			}
			fail(key, "%s", msg)
		}
		if c.PublicURL == "" {
			fail("public_url", "is required with auth.mode oidc: clients find the OAuth metadata through it (for example https://airlock.example.com/mcp)")
		}
	case "":
		fail("auth.mode", "is required: set none (unauthenticated, loopback only) or oidc")
	default:
		fail("auth.mode", "%q is not one of none, oidc", c.Auth.Mode)
	}
	if c.Approvals.Wait <= 0 {
		fail("approvals.wait", "must be a positive duration such as 60s")
	}
	if c.Approvals.Expire <= c.Approvals.Wait {
		fail("approvals.expire", "must be longer than approvals.wait (for example 15m)")
	}
	// A webhook is named in the store's outbox by its URL and format (the
	// same on every replica), so two alike would share their deliveries.
	sameWebhook := make(map[[2]string]int, len(c.Approvals.Webhooks))
	for i, w := range c.Approvals.Webhooks {
		key := fmt.Sprintf("approvals.webhooks[%d]", i)
		format := w.Format
		if format == "" {
			format = approval.FormatJSON
		}
		if j, ok := sameWebhook[[2]string{w.URL, format}]; ok {
			fail(key, "has the same url and format as approvals.webhooks[%d]: each approval is delivered to a webhook once; remove one of them", j)
		}
		sameWebhook[[2]string{w.URL, format}] = i
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			fail(key+".url", "is not an http(s) URL")
		}
		if w.SecretEnv != "" && w.SecretFile != "" {
			fail(key, "set secret_env or secret_file, not both")
		}
		if w.SecretEnv == "" && w.SecretFile == "" && w.Format != "slack" {
			fail(key+".secret_env", "a signing secret is required (secret_env or secret_file) so receivers can verify deliveries")
		}
		if w.Format != "" && w.Format != "json" && w.Format != "slack" {
			fail(key+".format", "%q is not one of json, slack", w.Format)
		}
	}
	if len(c.Approvals.Webhooks) > 0 && c.PublicURL == "" {
		fail("public_url", "is required with approvals.webhooks: webhooks link to the approval page")
	}
	if u := c.UI; u != nil {
		if c.Auth.Mode != AuthOIDC {
			fail("ui", "needs auth.mode oidc: people log in to the pages with your identity provider")
		}
		if u.ClientID == "" {
			fail("ui.client_id", "is required: the UI's OAuth client (redirect URI <public_url origin>/ui/callback)")
		}
		if (u.ClientSecretEnv == "") == (u.ClientSecretFile == "") {
			fail("ui.client_secret_env", "set exactly one of client_secret_env or client_secret_file")
		}
	}
	if c.Identity != nil && c.Identity.Subject == "" {
		fail("identity.subject", "is required when identity is set")
	}
	if c.Identity != nil && (!utf8.ValidString(c.Identity.Subject) || strings.IndexFunc(c.Identity.Subject, unicode.IsControl) >= 0) {
		fail("identity.subject", "must be UTF-8 without control characters: the transcript records every call under it")
	}
	if c.Limits.MaxRows <= 0 {
		fail("limits.max_rows", "must be a positive number of rows")
	}
	if c.Limits.MaxBytes <= 0 {
		fail("limits.max_bytes", "must be a positive number of bytes")
	}
	if c.Limits.Timeout <= 0 {
		fail("limits.timeout", "must be a positive duration such as 30s")
	}
	c.validateHTTP(fail)
	if c.Leases.ReuseMargin < 0 || c.Leases.ReuseMargin >= 1 {
		fail("leases.reuse_margin", "must be at least 0 and below 1 (0.5 reuses a lease while more than half its ttl is left)")
	}
	if c.Leases.SweepInterval <= 0 {
		fail("leases.sweep_interval", "must be a positive duration such as 30s")
	}
	if c.Leases.HeartbeatInterval <= 0 {
		fail("leases.heartbeat_interval", "must be a positive duration such as 5s")
	}
	if c.Leases.HeartbeatTimeout < 2*c.Leases.HeartbeatInterval {
		fail("leases.heartbeat_timeout", "must be at least twice leases.heartbeat_interval (%s)", c.Leases.HeartbeatInterval)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		fail("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		fail("log.format", "%q is not one of text, json", c.Log.Format)
	}

	c.validateResources(fail)
	return errs
}

// KnownKinds lists the resource kinds this build serves.
var KnownKinds = []string{"postgres", "ssh", "kubernetes"}

func validName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// errorAt returns an Error for key, with the line the key is on.
func (c *Config) errorAt(key, msg string) *Error {
	return &Error{Source: c.Source, Key: key, Line: c.LineOf(key), Msg: msg}
}

// LineOf finds the line of a key such as "resources[1].grants.ro.ttl" in
// the file, or of its closest parent that is there; 0 if none is.
func (c *Config) LineOf(key string) int {
	if c.file == nil {
		return 0
	}
	var node ast.Node
	for _, doc := range c.file.Docs {
		if doc.Body != nil {
			node = doc.Body
		}
	}
	d := &decoder{anchors: map[string]ast.Node{}}
	if node != nil {
		d.collectAnchors(node)
	}
	line := 0
	for _, seg := range keySegments(key) {
		node = d.resolve(node)
		if node == nil {
			break
		}
		if seg.index >= 0 {
			seq, ok := node.(*ast.SequenceNode)
			if !ok || seg.index >= len(seq.Values) {
				break
			}
			node = seq.Values[seg.index]
			line = nodeLine(node)
			continue
		}
		mvs, ok := d.mappingValues(node)
		if !ok {
			break
		}
		var next ast.Node
		for _, mv := range mvs {
			if keyText(mv) == seg.name {
				next, line = mv.Value, nodeLine(mv.Key)
				break
			}
		}
		if next == nil {
			break
		}
		node = next
	}
	return line
}

type keySegment struct {
	name  string
	index int // -1 for a name
}

// keySegments splits "resources[1].grants.ro" into resources, [1], grants, ro.
func keySegments(key string) []keySegment {
	var out []keySegment
	for _, part := range strings.Split(key, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			out = append(out, keySegment{name: name, index: -1})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if err != nil {
				break
			}
			out = append(out, keySegment{index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return out
}

// Path resolves a path from the config against the config's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// validateStore checks the store URL and the transcript settings kept in it.
func (c *Config) validateStore(fail func(key, format string, args ...any)) {
	scheme, _, _ := strings.Cut(c.Store, "://")
	switch strings.ToLower(scheme) {
	case "sqlite":
		if _, _, err := store.ParseSQLite(strings.TrimPrefix(c.Store, scheme+"://")); err != nil {
			fail("store", "%v", strings.TrimPrefix(err.Error(), store.ErrUnsupportedURL.Error()+": "))
		}
	case "postgres", "postgresql":
		u, err := url.Parse(c.Store)
		if err != nil {
			fail("store", "is not a postgres:// URL (for example postgres://airlock@db.example.com:5432/airlock?sslmode=verify-full&password_env=AIRLOCK_STORE_PASSWORD)")
			break
		}
		q := u.Query()
		if _, set := u.User.Password(); set || q.Has("password") {
			fail("store", "has a password in it: secrets are never in the config file; name it with the URL's password_env or password_file parameter")
		}
		if q.Get("password_env") != "" && q.Get("password_file") != "" {
			fail("store", "set password_env or password_file, not both")
		}
		if u.Path == "" || u.Path == "/" {
			fail("store", "names no database: postgres://USER@HOST:PORT/DATABASE")
		}
	default:
		fail("store", "%q is not supported; use sqlite://PATH (for example sqlite://./airlock.db) or postgres://USER@HOST/DATABASE", redactStoreURL(c.Store))
	}
	t := c.Transcripts
	if t.CheckpointInterval <= 0 {
		fail("transcripts.checkpoint_interval", "must be a positive duration such as 1m")
	}
	if t.CheckpointKeyEnv != "" && t.CheckpointKeyFile != "" {
		fail("transcripts.checkpoint_key_env", "set checkpoint_key_env or checkpoint_key_file, not both")
	}
	if w := t.CheckpointWebhook; w != nil {
		const key = "transcripts.checkpoint_webhook"
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			fail(key+".url", "is not an http(s) URL")
		}
		switch {
		case w.SecretEnv != "" && w.SecretFile != "":
			fail(key, "set secret_env or secret_file, not both")
		case w.SecretEnv == "" && w.SecretFile == "":
			fail(key+".secret_env", "a signing secret is required (secret_env or secret_file) so the receiver can verify deliveries")
		}
		if t.CheckpointKeyEnv == "" && t.CheckpointKeyFile == "" {
			fail(key, "needs transcripts.checkpoint_key_env or checkpoint_key_file: the receiver verifies each checkpoint's signature")
		}
	}
}

// redactStoreURL hides a password in a store URL quoted in a message.
func redactStoreURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return "<unparseable URL>"
		}
		return raw
	}
	if _, set := u.User.Password(); set {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String()
}

// StoreURL returns the store URL with a relative sqlite path, or a
// relative password_file of a postgres:// URL, resolved against the
// config's directory. The password itself is resolved when the store is
// opened.
func (c *Config) StoreURL() string {
	if scheme, _, _ := strings.Cut(c.Store, "://"); scheme == "postgres" || scheme == "postgresql" {
		u, err := url.Parse(c.Store)
		if err != nil {
			return c.Store
		}
		q := u.Query()
		if f := q.Get("password_file"); f != "" && !filepath.IsAbs(f) {
			q.Set("password_file", c.Path(f))
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	rest := strings.TrimPrefix(c.Store, "sqlite://")
	if rest == ":memory:" || filepath.IsAbs(rest) {
		return c.Store
	}
	return "sqlite://" + c.Path(rest)
}

// ResourceNames returns the configured resource names, sorted.
func (c *Config) ResourceNames() []string {
	names := make([]string, 0, len(c.Resources))
	for _, r := range c.Resources {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return names
}

// IsLoopback reports whether the listen address only accepts local
// connections.
func (c *Config) IsLoopback() bool {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Secret resolves an optional secret named by an environment variable or a
// file (a `*_env` or `*_file` key); key names the setting for messages, e.g.
// "masking.hash_key". At most one may be set; neither set is (nil, nil). The
// secret's value never appears in an error.
func Secret(env tools.Environment, key, envName, file string) ([]byte, error) {
	switch {
	case envName != "" && file != "":
		return nil, fmt.Errorf("%s: set %s_env or %s_file, not both", key, key, key)
	case envName != "":
		v, ok := env.Getenv(envName)
		if !ok || v == "" {
			return nil, fmt.Errorf("%s_env names %s, which is not set in the environment", key, envName)
		}
		return []byte(v), nil
	case file != "":
		b, err := env.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s_file: %w", key, err)
		}
		return []byte(strings.TrimSpace(string(b))), nil
	}
	return nil, nil
}

// OSEnvironment resolves secret references from the process environment and
// files, relative paths against dir.
type OSEnvironment struct{ Dir string }

func (e OSEnvironment) Getenv(name string) (string, bool) { return os.LookupEnv(name) }

func (e OSEnvironment) ReadFile(path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(e.Dir, path)
	}
	return os.ReadFile(path)
}
