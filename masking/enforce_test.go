package masking

import (
	"errors"
	"strings"
	"testing"
)

func TestEnforceOption(t *testing.T) {
	for _, tt := range []struct {
		name string
		pc   ProfileConfig
		want string // "" means valid
	}{
		{"privileges", ProfileConfig{Columns: []string{"*.email"}, Enforce: EnforcePrivileges}, ""},
		{"left out", ProfileConfig{Columns: []string{"*.email"}}, ""},
		{"unknown", ProfileConfig{Columns: []string{"*.email"}, Enforce: "grants"}, `profile "p": unknown enforce "grants" (valid: privileges, or leave it out)`},
		{"nothing to enforce", ProfileConfig{Detectors: []string{"email"}, Enforce: EnforcePrivileges}, `profile "p": enforce: privileges needs column rules`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Profiles: map[string]ProfileConfig{"p": tt.pc}}, nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidConfig)):
				t.Fatalf("New: %v, want an ErrInvalidConfig saying %q", err, tt.want)
			}
		})
	}

	e, err := New(Config{Profiles: map[string]ProfileConfig{
		"strict": {Columns: []string{"*.email", "billing.cards.number", "users.ssn"}, Enforce: EnforcePrivileges},
		"same":   {Columns: []string{"users.ssn", "email", "billing.cards.number"}, Enforce: EnforcePrivileges},
		"loose":  {Columns: []string{"*.email"}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	strict, _ := e.Profile("strict")
	same, _ := e.Profile("same")
	loose, _ := e.Profile("loose")
	if !strict.EnforcesPrivileges() || loose.EnforcesPrivileges() {
		t.Fatalf("EnforcesPrivileges: strict %v, loose %v", strict.EnforcesPrivileges(), loose.EnforcesPrivileges())
	}
	for _, tt := range []struct {
		schema, table, column string
		want                  bool
	}{
		{"public", "customers", "email", true},
		{"public", "customers", "EMAIL", true},
		{"billing", "cards", "number", true},
		{"public", "cards", "number", false},
		{"hr", "users", "ssn", true},
		{"public", "customers", "name", false},
	} {
		if got := strict.Protects(tt.schema, tt.table, tt.column); got != tt.want {
			t.Errorf("Protects(%s.%s.%s) = %v, want %v", tt.schema, tt.table, tt.column, got, tt.want)
		}
	}
	// The key names the profile and its rules: equal rules in another order
	// (and "email" for "*.email") give an equal digest; other rules do not.
	sk, mk, lk := strict.GuardKey(), same.GuardKey(), loose.GuardKey()
	if !strings.HasPrefix(sk, "strict:") || strings.TrimPrefix(sk, "strict:") != strings.TrimPrefix(mk, "same:") || strings.TrimPrefix(lk, "loose:") == strings.TrimPrefix(sk, "strict:") {
		t.Fatalf("guard keys: strict %s, same %s, loose %s", sk, mk, lk)
	}
}
