package tools_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/tools"
)

// svcSettings and svcGrant are a kind's own settings, as a kind package
// outside ResourceSpec declares them.
type svcSettings struct {
	BaseURL string            `yaml:"base_url"`
	Methods []string          `yaml:"methods"`
	Headers map[string]string `yaml:"headers"`
	TLS     *svcTLS           `yaml:"tls"`
	Retries int               `yaml:"retries"`
	Timeout time.Duration     `yaml:"timeout"`
	Ratio   float64           `yaml:"ratio"`
	Pinned  bool              `yaml:"pinned"`
	Port    uint16            `yaml:"port"`
	private string
}

type svcTLS struct {
	CAFile string `yaml:"ca_file"`
}

type svcGrant struct {
	Scopes []string `yaml:"scopes"`
}

func init() { tools.RegisterSettings("svc", svcSettings{}, svcGrant{}) }

func TestDecodeSettings(t *testing.T) {
	spec := tools.ResourceSpec{Name: "api", Kind: "svc", Settings: tools.Settings{
		"base_url": "https://api.example.com",
		"methods":  []any{"GET", "HEAD"},
		"headers":  map[string]any{"X-Team": "eng", "X-Num": int64(7)},
		"tls":      map[string]any{"ca_file": "ca.pem"},
		"retries":  int64(3),
		"timeout":  "1m30s",
		"ratio":    int64(1),
		"pinned":   true,
		"port":     int64(8443),
	}}
	got := svcSettings{Retries: 9, private: "kept"}
	if err := spec.DecodeSettings(&got); err != nil {
		t.Fatal(err)
	}
	want := svcSettings{BaseURL: "https://api.example.com", Methods: []string{"GET", "HEAD"},
		Headers: map[string]string{"X-Team": "eng", "X-Num": "7"}, TLS: &svcTLS{CAFile: "ca.pem"},
		Retries: 3, Timeout: 90 * time.Second, Ratio: 1, Pinned: true, Port: 8443, private: "kept"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	// Defaults stay when a key is absent or empty.
	def := svcSettings{Retries: 9}
	if err := (tools.ResourceSpec{Settings: tools.Settings{"retries": nil}}).DecodeSettings(&def); err != nil || def.Retries != 9 {
		t.Fatalf("got %+v, %v", def, err)
	}

	g := tools.Grant{Settings: tools.Settings{"scopes": []any{"read", "write"}}}
	var gs svcGrant
	if err := g.DecodeSettings(&gs); err != nil || !reflect.DeepEqual(gs.Scopes, []string{"read", "write"}) {
		t.Fatalf("grant: got %+v, %v", gs, err)
	}
}

// Every problem is reported, each with its key, as strictly as the config
// decoder reports the built-in kinds' fields.
func TestDecodeSettingsIsStrict(t *testing.T) {
	spec := tools.ResourceSpec{Settings: tools.Settings{
		"base_ulr": "https://x",
		"methods":  "GET",
		"tls":      map[string]any{"ca_fil": "x"},
		"retries":  "three",
		"timeout":  int64(30),
		"pinned":   "yes",
		"port":     int64(70000),
		"headers":  []any{"a"},
	}}
	var s svcSettings
	err := spec.DecodeSettings(&s)
	var errs tools.SettingErrors
	if !errors.As(err, &errs) {
		t.Fatalf("got %T %v", err, err)
	}
	got := map[string]string{}
	for _, e := range errs {
		got[e.Key] = e.Msg
	}
	want := map[string]string{
		"base_ulr":   `unknown key (did you mean "base_url"?); valid keys: base_url, methods, headers, tls, retries, timeout, ratio, pinned, port`,
		"methods":    `must be a list such as [a, b], not "GET"`,
		"tls.ca_fil": `unknown key (did you mean "ca_file"?); valid keys in tls: ca_file`,
		"retries":    `must be a whole number, not "three"`,
		"timeout":    `30 has no unit; write a number with a unit, such as 30s, 10m or 1h30m`,
		"pinned":     `must be true or false, not "yes"`,
		"port":       `70000 is too large`,
		"headers":    `must be a mapping (name: value, ...), not a list`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
	if !strings.HasPrefix(err.Error(), "base_ulr: unknown key") {
		t.Errorf("the error reads %q: it should start with the first key", err)
	}
	if err := spec.DecodeSettings(s); err == nil {
		t.Errorf("a struct value (not a pointer) was accepted")
	}
}

// A kind's keys on another kind's resource are refused, naming their owner;
// on a built-in kind's resource a key no kind takes is named as such; a
// kind's own keys are not foreign.
func TestForeignSettingsName(t *testing.T) {
	spec := tools.ResourceSpec{Kind: "postgres", AdminDSNEnv: "DSN", Address: "h:22", Settings: tools.Settings{"base_url": "https://x", "bogus": true}}
	var got []string
	for _, s := range spec.ForeignSettings("postgres") {
		got = append(got, s.Key+" is "+s.OwnerPhrase())
	}
	want := []string{"address is an ssh setting", "base_url is a svc setting", "bogus is a key no kind takes"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	got = nil
	for _, s := range spec.ForeignSettings("svc") {
		got = append(got, s.Key+"/"+s.Kind)
	}
	// A key nobody registered is left to the kind's DecodeSettings, which
	// names it with the valid keys.
	if want := []string{"admin_dsn_env/postgres", "address/ssh"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("for svc: got %q, want %q", got, want)
	}
	var s svcSettings
	if err := (tools.ResourceSpec{Settings: tools.Settings{"bogus": true}}).DecodeSettings(&s); err == nil || !strings.HasPrefix(err.Error(), "bogus: unknown key; valid keys: base_url") {
		t.Fatalf("for svc: %v", err)
	}

	g := tools.Grant{Roles: []string{"r"}, Settings: tools.Settings{"scopes": []any{"x"}}}
	got = nil
	for _, s := range g.ForeignSettings("ssh") {
		got = append(got, s.Key+"/"+s.Kind)
	}
	if want := []string{"roles/postgres", "scopes/svc"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("grant: got %q, want %q", got, want)
	}
	if p := (tools.Setting{Key: "k", Kind: "http"}).OwnerPhrase(); p != "an http setting" {
		t.Errorf("got %q", p)
	}
}

func TestRegisterSettingsRefuses(t *testing.T) {
	for _, c := range []struct {
		kind  string
		proto any
		want  string
	}{
		{"svc", svcSettings{}, "already registered"},
		{"postgres", svcSettings{}, "fields of ResourceSpec"},
		{"other", 3, "must be a struct"},
		{"other", struct {
			Address string `yaml:"address"`
		}{}, `key "address" is a field of ResourceSpec`},
	} {
		func() {
			defer func() {
				if v := recover(); v == nil || !strings.Contains(v.(string), c.want) {
					t.Errorf("RegisterSettings(%q): panic %v, want %q", c.kind, v, c.want)
				}
			}()
			tools.RegisterSettings(c.kind, c.proto, nil)
		}()
	}
	if ks, ok := tools.RegisteredSettings("svc"); !ok || ks.Resource != reflect.TypeFor[svcSettings]() || ks.Grant != reflect.TypeFor[svcGrant]() {
		t.Errorf("got %+v %v", ks, ok)
	}
}
