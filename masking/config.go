package masking

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Config is the masking section of the Airlock configuration.
type Config struct {
	Profiles  map[string]ProfileConfig `yaml:"profiles"`
	Detectors []DetectorConfig         `yaml:"detectors"` // user-defined regex detectors
	// HashKeyEnv and HashKeyFile name where the key for `replace: hash` lives.
	// They are resolved by the caller, not by this package: New takes the key.
	HashKeyEnv  string `yaml:"hash_key_env"`
	HashKeyFile string `yaml:"hash_key_file"`
}

// ProfileConfig selects what a profile masks and how.
type ProfileConfig struct {
	// Columns are "table.column" or "schema.table.column" globs with
	// path.Match syntax: "*.email", "public.users.phone", "users.ssn".
	// An unqualified pattern ("users.ssn") also matches the same table in any
	// schema; a bare name ("email") means "*.email". Matching ignores case.
	Columns []string `yaml:"columns"`
	// Fields are paths into object output: "data.*", "spec.containers[].env[].value".
	Fields []string `yaml:"fields"`
	// Detectors names the content detectors to run; "all" means every built-in.
	Detectors []string `yaml:"detectors"`
	// Replace is redact (default), partial or hash.
	Replace string `yaml:"replace"`
	// Enforce is "" (the broker masks) or "privileges": a PostgreSQL lease
	// for a call this profile masks is also minted so that PostgreSQL itself
	// refuses the protected columns (column-level grants instead of
	// membership in the grant's roles). Needs column rules.
	Enforce string `yaml:"enforce"`
}

// DetectorConfig is a user-defined regex detector.
type DetectorConfig struct {
	Name    string `yaml:"name"`
	Pattern string `yaml:"pattern"` // RE2 syntax
	// Keywords, when set, are a prefilter: the pattern runs only on input
	// that contains one of them (ASCII case-insensitive).
	Keywords []string `yaml:"keywords"`
}

// Replacement modes.
const (
	ReplaceRedact  = "redact"
	ReplacePartial = "partial"
	ReplaceHash    = "hash"
)

// Enforcement modes (`enforce:`).
const (
	// EnforcePrivileges makes PostgreSQL refuse the protected columns.
	EnforcePrivileges = "privileges"
)

// MinHashKeyLen is the shortest key New accepts for `replace: hash`.
const MinHashKeyLen = 16

var (
	// ErrInvalidConfig wraps every configuration error New returns.
	ErrInvalidConfig = errors.New("invalid masking config")
	// ErrUnsupportedType is returned for a value masking does not know how to
	// inspect; the caller must withhold the output.
	ErrUnsupportedType = errors.New("masking: unsupported value type")
	// ErrInternal is returned when a detector fails (a recovered panic).
	ErrInternal = errors.New("masking: internal error")
	// ErrClosed is returned by Writer.Write after Close.
	ErrClosed = errors.New("masking: writer closed")
)

// secretDetectors is the "default" profile: credentials that must never reach a model.
var secretDetectors = []string{
	"private_key", "jwt", "aws_access_key", "aws_secret_key", "github_token",
	"gitlab_token", "slack_token", "stripe_key", "google_api_key", "url_password",
	"bearer_token",
}

// DefaultConfig returns the built-in profiles: "default" masks secrets only;
// "pii" masks secrets plus personal data, by content and by column name.
func DefaultConfig() Config {
	pii := append(slices.Clone(secretDetectors), "email", "phone", "payment_card", "us_ssn", "iban")
	return Config{
		Profiles: map[string]ProfileConfig{
			"default": {Detectors: slices.Clone(secretDetectors), Replace: ReplaceRedact},
			"pii": {
				Columns:   []string{"*.email", "*.ssn", "*.phone", "*.card_number", "*.password*"},
				Detectors: pii,
				Replace:   ReplaceRedact,
			},
		},
	}
}

var detectorNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// validate checks cfg and returns every problem found, joined.
func (cfg Config) validate(hashKey []byte) error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	custom := map[string]bool{}
	for i, d := range cfg.Detectors {
		switch {
		case !detectorNameRE.MatchString(d.Name):
			fail("detectors[%d]: name %q must match %s", i, d.Name, detectorNameRE)
		case builtinByName[d.Name] != nil || d.Name == "all":
			fail("detector %q: name is taken by a built-in detector", d.Name)
		case custom[d.Name]:
			fail("detector %q: defined twice", d.Name)
		}
		custom[d.Name] = true
		if d.Pattern == "" {
			fail("detector %q: pattern is empty", d.Name)
		} else if re, err := regexp.Compile(d.Pattern); err != nil {
			fail("detector %q: pattern does not compile: %v", d.Name, err)
		} else if re.MatchString("") {
			fail("detector %q: pattern matches the empty string", d.Name)
		}
		for _, k := range d.Keywords {
			if strings.TrimSpace(k) == "" {
				fail("detector %q: empty keyword", d.Name)
			}
		}
	}
	valid := append(slices.Sorted(func(yield func(string) bool) {
		for _, b := range builtins {
			if !yield(b.name) {
				return
			}
		}
	}), "all")
	for name := range custom {
		valid = append(valid, name)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Profiles)) {
		pc := cfg.Profiles[name]
		if name == "" {
			fail("profile with an empty name")
		}
		for _, d := range pc.Detectors {
			if d != "all" && builtinByName[d] == nil && !custom[d] {
				fail("profile %q: unknown detector %q (valid: %s)", name, d, strings.Join(valid, ", "))
			}
		}
		switch pc.Replace {
		case "", ReplaceRedact, ReplacePartial:
		case ReplaceHash:
			if len(hashKey) < MinHashKeyLen {
				fail("profile %q: replace: hash needs a key of at least %d bytes (set masking.hash_key_env or masking.hash_key_file)", name, MinHashKeyLen)
			}
		default:
			fail("profile %q: unknown replace %q (valid: redact, partial, hash)", name, pc.Replace)
		}
		switch pc.Enforce {
		case "":
		case EnforcePrivileges:
			if len(pc.Columns) == 0 {
				fail("profile %q: enforce: privileges needs column rules (columns: [...]) to enforce", name)
			}
		default:
			fail("profile %q: unknown enforce %q (valid: privileges, or leave it out)", name, pc.Enforce)
		}
		for _, c := range pc.Columns {
			if _, err := path.Match(strings.ToLower(c), ""); err != nil || c == "" || strings.Count(c, ".") > 2 {
				fail("profile %q: bad column pattern %q (want [schema.]table.column globs, e.g. \"*.email\")", name, c)
			}
		}
		for _, f := range pc.Fields {
			if _, err := parseFieldPath(f); err != nil {
				fail("profile %q: bad field path %q: %v", name, f, err)
			}
		}
	}
	return errors.Join(errs...)
}
