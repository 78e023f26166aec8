package masking

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Engine holds the compiled profiles. It is immutable and safe for
// concurrent use; build a new one to change configuration.
type Engine struct {
	profiles map[string]*Profile
}

// Profile is one compiled masking profile. Safe for concurrent use.
type Profile struct {
	name    string
	replace string
	enabled [numBuiltins]*detector // nil when the profile does not use it
	anchor  [256]bool              // bytes that wake the scanner for enabled detectors
	// custom are the user regex detectors the profile uses.
	custom []*detector
	// extra is true when a detector outside the single pass is enabled
	// (aws_secret_key or a custom regex).
	extra   bool
	columns []columnPattern
	fields  []fieldPath
	hmacs   *sync.Pool // of hash.Hash; nil unless replace is hash
	enforce string     // ProfileConfig.Enforce
}

// detector is one enabled detector: a built-in or a user regex.
type detector struct {
	name  string
	label string // "[EMAIL]"
	// labelValue is label boxed once, so a redacted table cell costs no allocation.
	labelValue any
	id         detectorID
	builtin    bool
	partial    bool
	re         *regexp.Regexp
	keywords   []string // lowercased
}

// Counts maps a detector or rule name to the number of values it masked.
// It never holds the values themselves.
type Counts map[string]int

// Add adds o into c. c must not be nil.
func (c Counts) Add(o Counts) {
	for k, v := range o {
		c[k] += v
	}
}

// Rule names used in Counts besides detector names.
const (
	RuleColumn      = "column"       // a column rule replaced the value
	RuleField       = "field"        // a profile field path replaced the value
	RuleK8sSecret   = "k8s_secret"   // data/stringData of a Kubernetes Secret
	RuleLastApplied = "last_applied" // kubectl last-applied-configuration annotation
	RuleEnvSecret   = "env_secret"   // env[] entry whose name looks secret
)

// New validates cfg and compiles it. hashKey is the key for `replace: hash`
// (resolved by the caller from cfg.HashKeyEnv / cfg.HashKeyFile); it may be
// nil when no profile hashes. The error lists every problem found.
func New(cfg Config, hashKey []byte) (*Engine, error) {
	if err := cfg.validate(hashKey); err != nil {
		return nil, err
	}
	custom := map[string]*detector{}
	for _, dc := range cfg.Detectors {
		d := &detector{name: dc.Name, label: "[" + strings.ToUpper(dc.Name) + "]", re: regexp.MustCompile(dc.Pattern)}
		for _, k := range dc.Keywords {
			d.keywords = append(d.keywords, strings.ToLower(strings.TrimSpace(k)))
		}
		custom[dc.Name] = d
	}
	key := slices.Clone(hashKey)
	e := &Engine{profiles: map[string]*Profile{}}
	for name, pc := range cfg.Profiles {
		p := &Profile{name: name, replace: pc.Replace, enforce: pc.Enforce}
		if p.replace == "" {
			p.replace = ReplaceRedact
		}
		for _, dn := range pc.Detectors {
			switch {
			case dn == "all":
				for _, b := range builtins {
					p.enable(b)
				}
			case builtinByName[dn] != nil:
				p.enable(*builtinByName[dn])
			default:
				d := custom[dn]
				if !slices.Contains(p.custom, d) {
					p.custom = append(p.custom, d)
					p.extra = true
				}
			}
		}
		for _, c := range pc.Columns {
			p.columns = append(p.columns, compileColumnPattern(c))
		}
		for _, f := range pc.Fields {
			fp, _ := parseFieldPath(f) // validated
			p.fields = append(p.fields, fp)
		}
		if p.replace == ReplaceHash {
			p.hmacs = &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}
		}
		e.profiles[name] = p
	}
	return e, nil
}

func (p *Profile) enable(b builtin) {
	if p.enabled[b.id] != nil {
		return
	}
	p.enabled[b.id] = &detector{
		name: b.name, label: "[" + strings.ToUpper(b.name) + "]",
		id: b.id, builtin: true, partial: b.partial,
	}
	for i := 0; i < len(b.anchors); i++ {
		p.anchor[b.anchors[i]] = true
	}
	if b.id == detAWSSecretKey {
		p.extra = true
	}
}

func (p *Profile) on(id detectorID) bool { return p.enabled[id] != nil }

// Name returns the profile's name.
func (p *Profile) Name() string { return p.name }

// Profile returns the named profile.
func (e *Engine) Profile(name string) (*Profile, bool) {
	p, ok := e.profiles[name]
	return p, ok
}

// ProfileNames returns the profile names, sorted.
func (e *Engine) ProfileNames() []string {
	return slices.Sorted(maps.Keys(e.profiles))
}

func (p *Profile) hmac() hash.Hash { return p.hmacs.Get().(hash.Hash) }
