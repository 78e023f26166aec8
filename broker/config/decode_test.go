package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// One load reports every mistake at once, each with its line and key, in
// words: no Go types, no "unmarshal".
func TestParseReportsEveryErrorAtOnce(t *testing.T) {
	text := `listen: 127.0.0.1:8080
auth: {mode: none}
limits:
  max_rows: lots
  timeout: 30
leases: {reuse_margin: half}
log: {levle: debug}
resources:
  - name: shop
    kind: postgres
    grants:
      ro: {roles: r, ttl: soon}
`
	_, err := Parse([]byte(text), "airlock.yaml")
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %T %v", err, err)
	}
	want := []string{
		`airlock.yaml:4: limits.max_rows: must be a whole number, not "lots"`,
		`airlock.yaml:5: limits.timeout: 30 has no unit; write a number with a unit, such as 30s, 10m or 1h30m`,
		`airlock.yaml:6: leases.reuse_margin: must be a number such as 0.5, not "half"`,
		`airlock.yaml:7: log.levle: unknown key (did you mean "level"?); valid keys in log: level, format`,
		`airlock.yaml:9: resources[0]: needs the admin connection string`,
		`airlock.yaml:12: resources[0].grants.ro.roles: must be a list such as [a, b], not "r"`,
		`airlock.yaml:12: resources[0].grants.ro.ttl: "soon" is not a duration`,
	}
	if len(errs) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if i >= len(errs) || !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d:\n got %v\nwant %s...", i, errs[i], w)
		}
	}
	for _, leak := range []string{"Go struct", "unmarshal", "int64", "time.Duration"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error text leaks %q:\n%v", leak, err)
		}
	}
}

// Anchors, aliases and merge keys work as in any YAML file.
func TestParseAnchorsAndMergeKeys(t *testing.T) {
	text := `auth: {mode: none}
x-grants: &grants
  readonly: {roles: [r], ttl: 10m}
resources:
  - &pg
    name: a
    kind: postgres
    admin_dsn_env: A
    grants: *grants
  - <<: *pg
    name: b
`
	_, err := Parse([]byte(text), "airlock.yaml")
	// x-grants is not a key airlock knows: that is the one error.
	if err == nil || !strings.Contains(err.Error(), "x-grants: unknown key") || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("want only the unknown x-grants, got %v", err)
	}
	cfg, err := Parse([]byte(strings.Replace(text, "x-grants: &grants\n  readonly: {roles: [r], ttl: 10m}\n", "", 1)), "airlock.yaml")
	if err == nil {
		t.Fatalf("an alias to an anchor that is gone must fail: %+v", cfg)
	}
	text = `auth: {mode: none}
resources:
  - &pg
    name: a
    kind: postgres
    admin_dsn_env: A
    grants: {readonly: {roles: [r], ttl: 10m}}
  - <<: *pg
    name: b
`
	cfg, err = Parse([]byte(text), "airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Resources) != 2 || cfg.Resources[1].Name != "b" || cfg.Resources[1].AdminDSNEnv != "A" || cfg.Resources[1].Grants["readonly"].TTL.String() != "10m0s" {
		t.Errorf("merged resource = %+v", cfg.Resources[1])
	}
}

// Each kind's settings are checked on the file, every resource, every
// grant, without resolving a secret.
func TestParseResourceChecks(t *testing.T) {
	res := func(body string) string {
		return "auth: {mode: none}\nresources:\n" + body
	}
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"postgres without admin", res("  - name: a\n    kind: postgres\n    grants: {ro: {roles: [r], ttl: 1m}}\n"), []string{":3: resources[0]: needs the admin connection string"}},
		{"postgres with both", res("  - name: a\n    kind: postgres\n    admin_dsn_env: A\n    admin_dsn_file: f\n    grants: {ro: {roles: [r], ttl: 1m}}\n"), []string{":6: resources[0].admin_dsn_file: set only one of admin_dsn_env, admin_dsn_file"}},
		{"foreign setting", res("  - name: a\n    kind: postgres\n    admin_dsn_env: A\n    address: h:22\n    grants: {ro: {roles: [r], ttl: 1m}}\n"), []string{":6: resources[0].address: is an ssh setting, not valid for kind postgres"}},
		{"foreign grant setting", res("  - name: a\n    kind: postgres\n    admin_dsn_env: A\n    grants: {ro: {roles: [r], principals: [p], ttl: 1m}}\n"), []string{"resources[0].grants.ro.principals: is a ssh grant setting, not valid for kind postgres"}},
		{"ssh", res("  - name: w\n    kind: ssh\n    address: h\n    shell: /bin/zsh\n    source_address: [nope]\n    grants: {op: {ttl: 1m}}\n"), []string{
			`resources[0].address: "h" is not host:port`, "resources[0]: needs the host's identity", "resources[0]: needs airlock's user CA key",
			`resources[0].source_address[0]: "nope" is neither`, `resources[0].shell: "/bin/zsh" is not the absolute path of bash`, "resources[0].grants.op.principals: is required"}},
		{"kubernetes", res("  - name: k\n    kind: kubernetes\n    in_cluster: true\n    grants:\n      v: {service_account: nope, ttl: 5m}\n      i: {impersonate: {user: \"{{identity.name}}\"}, ttl: 10m}\n      n: {ttl: 10m}\n"), []string{
			`resources[0].grants.v.service_account: "nope" is not NAMESPACE/NAME`, "resources[0].grants.v.ttl: 5m0s is too short",
			"resources[0].grants.i.impersonate.user: \"{{identity.name}}\": unknown placeholder", "resources[0].grants.n: needs service_account"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "airlock.yaml")
			if err == nil {
				t.Fatal("want errors")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
		})
	}
}

// ResourceError drops the kinds' prefixes and sentinels and puts a leading
// setting name on the key, with its line.
func TestResourceError(t *testing.T) {
	cfg, err := Parse([]byte("auth: {mode: none}\nresources:\n  - name: web\n    kind: ssh\n    address: h:22\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhUJk9n1fSm8m8QXXu0w2fOV7FOpV1CTnFDk7cRvxjH\"\n    ca_key_file: ./ca\n    grants: {op: {principals: [o], ttl: 1m}}\n"), "/etc/airlock/airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.ResourceError(0, fmt.Errorf("resource web: ca_key_file: cannot read /etc/airlock/ca: no such file or directory: %w", errors.New("invalid ssh resource configuration")))
	if got, want := e.Error(), "/etc/airlock/airlock.yaml:7: resources[0].ca_key_file: cannot read /etc/airlock/ca: no such file or directory"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	e = cfg.ResourceError(0, errors.New("invalid postgres resource configuration: resource web: resource web: something"))
	if got, want := e.Error(), "/etc/airlock/airlock.yaml:3: resources[0]: something"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
