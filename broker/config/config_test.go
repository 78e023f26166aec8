package config

import (
	"strings"
	"testing"
)

const valid = `
listen: 127.0.0.1:8080
auth: {mode: none}
resources:
  - name: shop
    kind: postgres
    admin_dsn_env: SHOP_DSN
    grants:
      readonly: {roles: [r], ttl: 10m}
`

func TestParseValidAppliesDefaults(t *testing.T) {
	cfg, err := Parse([]byte(valid), "/etc/airlock/airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MaxRows != 1000 || cfg.Leases.ReuseMargin != 0.5 || cfg.Log.Level != "info" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.StoreURL() != "sqlite:///etc/airlock/airlock.db" {
		t.Errorf("store URL = %s", cfg.StoreURL())
	}
	if _, ok := cfg.Masking.Profiles["pii"]; !ok {
		t.Errorf("built-in masking profiles missing: %v", cfg.Masking.Profiles)
	}
	if !cfg.IsLoopback() {
		t.Error("127.0.0.1 is loopback")
	}
}

// Every error names the key, its line, and what would be valid.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key", valid + "bogus: 1\n", []string{":10:", "bogus"}},
		{"auth mode missing", strings.Replace(valid, "auth: {mode: none}", "", 1), []string{"auth.mode", "none", "oidc"}},
		{"bad auth mode", strings.Replace(valid, "mode: none", "mode: open", 1), []string{"auth.mode", `"open"`, ":3"}},
		{"bad listen", strings.Replace(valid, "127.0.0.1:8080", "8080", 1), []string{"listen", ":2", "host:port"}},
		{"bad ttl type", strings.Replace(valid, "ttl: 10m", "ttl: soon", 1), []string{":9"}},
		{"bad access", strings.Replace(valid, "ttl: 10m}", "ttl: 10m, access: all}", 1), []string{"resources[0].grants.readonly.access", "read_only, read_write", ":9"}},
		{"no grants", strings.Replace(valid, "    grants:\n      readonly: {roles: [r], ttl: 10m}\n", "", 1), []string{"resources[0].grants", "at least one grant"}},
		{"duplicate resource", valid + "  - name: shop\n    kind: postgres\n    grants: {a: {ttl: 1m}}\n", []string{"resources[1].name", "already", ":10"}},
		{"store scheme", valid + "store: mysql://x\n", []string{"store", "sqlite://"}},
		{"bad log level", valid + "log: {level: loud}\n", []string{"log.level", "debug, info, warn, error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "airlock.yaml")
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoopback(t *testing.T) {
	for listen, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "0.0.0.0:1": false, "10.0.0.1:1": false} {
		c := &Config{Listen: listen}
		if got := c.IsLoopback(); got != want {
			t.Errorf("IsLoopback(%s) = %v", listen, got)
		}
	}
}
