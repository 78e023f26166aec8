package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/tools"
)

// widgetSettings and widgetGrant are the settings of a kind that keeps them
// out of ResourceSpec, registered as a kind package registers them.
type widgetSettings struct {
	Endpoint string            `yaml:"endpoint"`
	Methods  []string          `yaml:"methods"`
	Headers  map[string]string `yaml:"headers"`
	TLS      *widgetTLS        `yaml:"tls"`
}

type widgetTLS struct {
	CAFile string `yaml:"ca_file"`
}

type widgetGrant struct {
	Scopes []string `yaml:"scopes"`
}

func init() { tools.RegisterSettings("widget", widgetSettings{}, widgetGrant{}) }

// A registered kind's keys sit beside the common ones in the file and reach
// the kind as Settings, anchors and merge keys resolved.
func TestKindSettingsReachTheKind(t *testing.T) {
	text := `auth: {mode: none}
resources:
  - &api
    name: api
    kind: widget
    endpoint: https://other.example.com
    tls: &tls {ca_file: ca.pem}
    grants:
      reader: {scopes: [read], ttl: 5m}
  - <<: *api
    name: api2
    endpoint: https://api.example.com
    methods: [GET, HEAD]
    headers: {X-Team: eng}
    tls: *tls
`
	cfg, err := Parse([]byte(text), "airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Resources[1]
	var s widgetSettings
	if err := r.DecodeSettings(&s); err != nil {
		t.Fatal(err)
	}
	want := widgetSettings{Endpoint: "https://api.example.com", Methods: []string{"GET", "HEAD"},
		Headers: map[string]string{"X-Team": "eng"}, TLS: &widgetTLS{CAFile: "ca.pem"}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	var g widgetGrant
	if err := r.Grants["reader"].DecodeSettings(&g); err != nil || !reflect.DeepEqual(g.Scopes, []string{"read"}) {
		t.Fatalf("grant: %+v, %v", g, err)
	}
	if r.Grants["reader"].TTL.Minutes() != 5 {
		t.Errorf("the grant's ttl: %v", r.Grants["reader"].TTL)
	}
}

// The file is checked against a registered kind's settings as strictly as
// against the built-in kinds' fields: every problem at once, each with its
// key and line, and a kind's key on another kind's resource (or grant)
// named as that kind's.
func TestKindSettingsAreStrict(t *testing.T) {
	text := `auth: {mode: none}
resources:
  - name: api
    kind: widget
    endpont: https://api.example.com
    methods: GET
    tls: {ca_fil: ca.pem}
    address: 10.0.0.5:22
    grants:
      reader: {scopes: [read], roles: [r], scops: [x], ttl: 5m}
  - name: shop
    kind: postgres
    admin_dsn_env: DSN
    endpoint: https://x
    adress: x
    grants:
      ro: {roles: [r], scopes: [read], ttl: 5m}
  - name: odd
    kind: gadget
    grants:
      g: {ttl: 5m}
`
	_, err := Parse([]byte(text), "airlock.yaml")
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %T %v", err, err)
	}
	want := []string{
		`airlock.yaml:5: resources[0].endpont: unknown key (did you mean "endpoint"?); valid keys in resources[0]: name, kind, description, labels, grants, mask, endpoint, methods, headers, tls`,
		`airlock.yaml:6: resources[0].methods: must be a list such as [a, b], not "GET"`,
		`airlock.yaml:7: resources[0].tls.ca_fil: unknown key (did you mean "ca_file"?); valid keys in resources[0].tls: ca_file`,
		`airlock.yaml:8: resources[0].address: is an ssh setting, not valid for kind widget; widget resources take endpoint, methods, headers and tls`,
		`airlock.yaml:10: resources[0].grants.reader.roles: is a postgres grant setting, not valid for kind widget; widget grants take scopes and ttl`,
		`airlock.yaml:10: resources[0].grants.reader.scops: unknown key (did you mean "scopes"?); valid keys in resources[0].grants.reader: ttl, scopes`,
		`airlock.yaml:14: resources[1].endpoint: is a widget setting, not valid for kind postgres; postgres resources take admin_dsn_env | admin_dsn_file and connect_host`,
		`airlock.yaml:15: resources[1].adress: unknown key (did you mean "address"?); valid keys in resources[1]: name, kind, description, labels, grants, mask, admin_dsn_env`,
		`airlock.yaml:17: resources[1].grants.ro.scopes: is a widget grant setting, not valid for kind postgres; postgres grants take roles, access and ttl`,
		`airlock.yaml:19: resources[2].kind: "gadget" is not one of postgres, ssh, kubernetes, widget`,
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if len(got) != len(want) {
		t.Errorf("got %d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if i >= len(got) || !strings.HasPrefix(got[i], w) {
			t.Errorf("error %d:\n got %s\nwant %s...", i, at(got, i), w)
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}

// An error the kind's Open returns about one of its own settings lands on
// that key and its line, as the built-in kinds' errors do.
func TestKindOpenErrorFindsItsLine(t *testing.T) {
	text := `auth: {mode: none}
resources:
  - name: api
    kind: widget
    endpoint: http://api.example.com
    tls:
      ca_file: ca.pem
    grants:
      reader: {ttl: 5m}
`
	cfg, err := Parse([]byte(text), "airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("resource api: endpoint: must be https: invalid widget resource configuration"), "airlock.yaml:5: resources[0].endpoint: must be https"},
		{fmt.Errorf("resource api: tls.ca_file: no such file"), "airlock.yaml:7: resources[0].tls.ca_file: no such file"},
	} {
		if got := cfg.ResourceError(0, c.err).Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}
