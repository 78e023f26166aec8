package httpkind

import (
	"errors"
	"strings"
	"testing"
)

func TestOpenRejects(t *testing.T) {
	env := mapEnv{vars: map[string]string{"TOKEN": "t0k", "SECRET": "s3cret", "EMPTY": " "}}
	grants := "grants:\n  reader: {ttl: 10m}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"no base_url", grants, "base_url: required"},
		{"plain http off loopback", "base_url: http://api.example.com\n" + grants, "plain http is only accepted on loopback"},
		{"ftp", "base_url: ftp://api.example.com\n" + grants, "scheme must be https"},
		{"user info", "base_url: https://u:p@api.example.com\n" + grants, "carries user info"},
		{"query in base_url", "base_url: https://api.example.com/?a=1\n" + grants, "query or fragment"},
		{"unknown key", "base_url: https://api.example.com\nbase_uri: x\n" + grants, `base_uri: unknown key (did you mean "base_url"?)`},
		{"bad method", "base_url: https://api.example.com\nmethods: [GET, TRACE]\n" + grants, `methods[1]: "TRACE" is not one of`},
		{"bad prefix", "base_url: https://api.example.com\npath_prefixes: [/v1/../admin]\n" + grants, "path_prefixes[0]"},
		{"Host header", "base_url: https://api.example.com\nheaders: {Host: other}\n" + grants, "airlock sets Host itself"},
		{"CRLF header", "base_url: https://api.example.com\nheaders: {X-A: \"a\\r\\nB: c\"}\n" + grants, "control character"},
		{"Set-Cookie shown", "base_url: https://api.example.com\nresponse_headers: [Set-Cookie]\n" + grants, "never shown to agents"},
		{"bad allow_private", "base_url: https://api.example.com\nallow_private: [intranet]\n" + grants, "neither an address nor a CIDR"},
		{"missing CA file", "base_url: https://api.example.com\ntls: {ca_file: /nonexistent/ca.pem}\n" + grants, "tls.ca_file: cannot read /nonexistent/ca.pem"},
		{"cert without key", "base_url: https://api.example.com\ntls: {cert_file: /x}\n" + grants, "cert_file and key_file go together"},
		{"unknown auth", "base_url: https://api.example.com\nauth: {type: basic}\n" + grants, `"basic" is not one of`},
		{"bearer without secret", "base_url: https://api.example.com\nauth: {type: bearer}\n" + grants, "needs a secret"},
		{"bearer env unset", "base_url: https://api.example.com\nauth: {type: bearer, token_env: NOPE}\n" + grants, "environment variable NOPE is not set"},
		{"bearer env blank", "base_url: https://api.example.com\nauth: {type: bearer, token_env: EMPTY}\n" + grants, "EMPTY is not set"},
		{"both env and file", "base_url: https://api.example.com\nauth: {type: bearer, token_env: TOKEN, token_file: /x}\n" + grants, "set one of token_env and token_file"},
		{"header without name", "base_url: https://api.example.com\nauth: {type: header, token_env: TOKEN}\n" + grants, "auth.header: required"},
		{"oauth2 without token_url", "base_url: https://api.example.com\nauth: {type: oauth2_client_credentials, client_id: c, client_secret_env: SECRET}\n" + grants, "auth.token_url: required"},
		{"oauth2 plain http token_url", "base_url: https://api.example.com\nauth: {type: oauth2_client_credentials, token_url: \"http://idp.example.com/token\", client_id: c, client_secret_env: SECRET}\n" + grants, "plain http is only accepted on loopback"},
		{"oauth2 inline secret", "base_url: https://api.example.com\nauth: {type: oauth2_client_credentials, token_url: \"https://idp.example.com/token\", client_id: c, client_secret: s}\n" + grants, "auth.client_secret: unknown key"},
		{"no grants", "base_url: https://api.example.com\n", "needs at least one grant"},
		{"grant without ttl", "base_url: https://api.example.com\ngrants:\n  reader: {scopes: [a]}\n", "ttl: required"},
		{"scopes without oauth2", "base_url: https://api.example.com\ngrants:\n  reader: {ttl: 10m, scopes: [a]}\n", "scopes and audience need auth.type oauth2_client_credentials"},
		{"unknown grant key", "base_url: https://api.example.com\ngrants:\n  reader: {ttl: 10m, scope: [a]}\n", `scope: unknown key (did you mean "scopes"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewKind().Open(specFromYAML(t, "name: api\n"+tc.yaml), env)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want %q", err, tc.want)
			}
			mustNotContain(t, "error", err.Error(), "t0k", "s3cret")
		})
	}
}

func TestOpenRejectsAnotherKindsSetting(t *testing.T) {
	spec := specFromYAML(t, "name: api\nbase_url: https://api.example.com\ngrants:\n  reader: {ttl: 10m}\n")
	spec.Address = "10.0.0.1:22" // as the config decoder fills ssh's typed field
	_, err := NewKind().Open(spec, mapEnv{})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "address: not an http setting (it is an ssh setting)") {
		t.Fatalf("Open = %v", err)
	}
}

func TestOpenAccepts(t *testing.T) {
	env := mapEnv{vars: map[string]string{"TOKEN": "t0k", "RO": "r0"}}
	r := open(t, env, `
name: api
base_url: https://api.example.com/v1/
methods: [get, POST]
path_prefixes: [/users/, /orders]
headers: {Accept: application/json}
allow_private: [10.1.0.0/16, 192.168.1.7]
auth: {type: header, header: x-api-key, token_env: TOKEN}
grants:
  writer: {ttl: 5m}
  reader: {ttl: 10m, token_env: RO}
`)
	if r.Origin() != "https://api.example.com" || r.base.Path != "/v1" || r.port() != "443" {
		t.Errorf("origin %s, base path %q, port %s", r.Origin(), r.base.Path, r.port())
	}
	if !r.methods["GET"] || !r.methods["POST"] || r.methods["DELETE"] {
		t.Errorf("methods %v", r.methods)
	}
	if got := mint(t, r, "reader").Secret().Reveal(); got != "r0" {
		t.Errorf("reader secret %q, want the grant's own", got)
	}
	if c := mint(t, r, "writer"); c.Secret().Reveal() != "t0k" || c.header != "X-Api-Key" {
		t.Errorf("writer secret %q in %s", c.Secret().Reveal(), c.header)
	}
	if err := r.checkAddress("api.example.com", mustAddr("10.1.2.3")); err != nil {
		t.Errorf("a named private prefix: %v", err)
	}
	for _, a := range []string{"10.2.0.1", "127.0.0.1", "169.254.169.254", "::1", "fd00::1", "100.64.0.1", "0.0.0.0", "::ffff:127.0.0.1", "64:ff9b::a00:1"} {
		if err := r.checkAddress("api.example.com", mustAddr(a)); !errors.Is(err, ErrDestination) {
			t.Errorf("%s: %v, want refused", a, err)
		}
	}
	if err := r.checkAddress("api.example.com", mustAddr("93.184.216.34")); err != nil {
		t.Errorf("a public address: %v", err)
	}
}
