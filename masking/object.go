package masking

import (
	"errors"
	"path"
	"strings"
)

// fieldPath is a compiled field rule: "spec.containers[].env[].value".
type fieldPath []fieldSeg

type fieldSeg struct {
	key  string // path.Match glob for a map key
	each bool   // "[]": the value is a list; apply the rest to each element
}

func parseFieldPath(f string) (fieldPath, error) {
	if strings.TrimSpace(f) == "" {
		return nil, errors.New("empty path")
	}
	var fp fieldPath
	for _, part := range strings.Split(f, ".") {
		seg := fieldSeg{key: part}
		if k, ok := strings.CutSuffix(part, "[]"); ok {
			seg = fieldSeg{key: k, each: true}
		}
		if seg.key == "" || strings.ContainsAny(seg.key, "[]") && !strings.HasPrefix(seg.key, "[") {
			return nil, errors.New("want dot-separated keys, each optionally followed by [] (e.g. spec.containers[].env[].value)")
		}
		if _, err := path.Match(seg.key, ""); err != nil {
			return nil, err
		}
		fp = append(fp, seg)
	}
	return fp, nil
}

const lastAppliedKey = "kubectl.kubernetes.io/last-applied-configuration"

// MaskObject masks decoded JSON or YAML (map[string]any, []any, scalars),
// modifying maps and slices in place, in three steps:
//
//  1. built-in rules that apply whatever the profile: every value under data
//     and stringData of a Kubernetes Secret (an object with kind "Secret");
//     the kubectl last-applied-configuration annotation; the value of env[]
//     entries whose name looks secret (PASSWORD, SECRET, TOKEN, KEY, ...);
//  2. the profile's field paths, anchored at the root object, at each element
//     of a root list, and at each element of "items" (Kubernetes lists);
//  3. the profile's detectors on every remaining string.
func (p *Profile) MaskObject(v any) (out any, c Counts, err error) {
	defer recoverInto(&err)
	counts := Counts{}
	p.objectRules(v, counts)
	if len(p.fields) > 0 {
		v = p.applyFields(v, counts)
	}
	out, err = p.maskValue(v, counts)
	if err != nil {
		return nil, nil, err
	}
	return out, counts, nil
}

// objectRules applies the built-in rules anywhere in the tree.
func (p *Profile) objectRules(v any, counts Counts) {
	switch t := v.(type) {
	case map[string]any:
		if kind, _ := t["kind"].(string); kind == "Secret" {
			for _, k := range [...]string{"data", "stringData"} {
				if d, ok := t[k]; ok {
					t[k] = p.maskAll(d, ruleDetectors[RuleK8sSecret], counts)
				}
			}
		}
		if a, ok := t[lastAppliedKey]; ok && a != nil {
			t[lastAppliedKey] = p.replaceWhole(a, ruleDetectors[RuleLastApplied], false)
			counts[RuleLastApplied]++
		}
		if env, ok := t["env"].([]any); ok {
			for _, e := range env {
				if em, ok := e.(map[string]any); ok {
					name, _ := em["name"].(string)
					if val, ok := em["value"]; ok && val != nil && secretName(name) {
						em["value"] = p.replaceWhole(val, ruleDetectors[RuleEnvSecret], false)
						counts[RuleEnvSecret]++
					}
				}
			}
		}
		for _, e := range t {
			p.objectRules(e, counts)
		}
	case []any:
		for _, e := range t {
			p.objectRules(e, counts)
		}
	}
}

// secretWords mark an environment variable name as holding a secret when one
// is a word of the name (split at _ - .) or, for the longer ones, a substring.
var secretWords = []string{"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE", "APIKEY", "AUTH", "DSN"}
var secretParts = []string{"KEY", "PWD", "PASS", "CREDS", "CERT", "SIGNATURE", "SALT"}

func secretName(name string) bool {
	u := strings.ToUpper(name)
	for _, w := range secretWords {
		if strings.Contains(u, w) {
			return true
		}
	}
	for _, part := range strings.FieldsFunc(u, func(r rune) bool { return r == '_' || r == '-' || r == '.' }) {
		for _, w := range secretParts {
			if part == w {
				return true
			}
		}
	}
	return false
}

// maskAll replaces every leaf under v.
func (p *Profile) maskAll(v any, d *detector, counts Counts) any {
	switch t := v.(type) {
	case nil:
		return nil
	case map[string]any:
		for k, e := range t {
			t[k] = p.maskAll(e, d, counts)
		}
		return t
	case map[any]any:
		for k, e := range t {
			t[k] = p.maskAll(e, d, counts)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = p.maskAll(e, d, counts)
		}
		return t
	}
	counts[d.name]++
	return p.replaceWhole(v, d, d.name == RuleField)
}

// applyFields applies the profile's field paths at each object root.
func (p *Profile) applyFields(v any, counts Counts) any {
	switch t := v.(type) {
	case []any:
		for i, e := range t {
			t[i] = p.applyFields(e, counts)
		}
		return t
	case map[string]any:
		for _, fp := range p.fields {
			v = p.applyField(v, fp, counts)
		}
		if items, ok := t["items"].([]any); ok {
			p.applyFields(items, counts)
		}
	}
	return v
}

func (p *Profile) applyField(v any, fp fieldPath, counts Counts) any {
	if len(fp) == 0 {
		return p.maskAll(v, ruleDetectors[RuleField], counts)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	seg := fp[0]
	for k, child := range m {
		if ok, _ := path.Match(seg.key, k); !ok {
			continue
		}
		if seg.each {
			if list, ok := child.([]any); ok {
				for i, e := range list {
					list[i] = p.applyField(e, fp[1:], counts)
				}
			}
			continue
		}
		m[k] = p.applyField(child, fp[1:], counts)
	}
	return m
}
