package tools

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Settings are the keys of a resource entry (or of a grant) that no common
// field of ResourceSpec (or Grant) names, as the config file wrote them:
// values are string, int64, float64, bool, nil, []any and map[string]any.
// They belong to the resource's kind, which reads them with DecodeSettings
// into its own struct.
type Settings map[string]any

// DecodeSettings decodes the resource's kind-specific keys (Settings)
// strictly into dst, a pointer to a struct whose yaml tags name the keys: an
// unknown key or a value of the wrong type is an error naming the key
// ("tls.ca_fil: unknown key (did you mean \"ca_file\"?); valid keys in tls:
// ca_file, ..."). Every problem is reported: the error is a SettingErrors.
func (s ResourceSpec) DecodeSettings(dst any) error { return DecodeSettings(s.Settings, dst) }

// DecodeSettings decodes the grant's kind-specific keys (Settings) strictly
// into dst, as ResourceSpec.DecodeSettings does; keys are relative to the
// grant ("scopes[0]").
func (g Grant) DecodeSettings(dst any) error { return DecodeSettings(g.Settings, dst) }

// SettingError is one problem with a kind-specific setting: Key is its path
// below the resource entry or the grant ("tls.ca_file", "scopes[1]").
type SettingError struct {
	Key string
	Msg string
}

func (e *SettingError) Error() string { return e.Key + ": " + e.Msg }

// SettingErrors are every problem DecodeSettings found, in key order.
type SettingErrors []*SettingError

func (es SettingErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap lists the errors, for errors.As and config check.
func (es SettingErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// DecodeSettings decodes settings into dst (a pointer to a struct with yaml
// tags), strictly; see ResourceSpec.DecodeSettings. Fields dst already holds
// stay as they are unless a key sets them (defaults).
func DecodeSettings(settings Settings, dst any) error { return DecodeSettingsAt(settings, dst, "") }

// DecodeSettingsAt is DecodeSettings with every key, in errors and their
// messages, below at ("resources[2]"): what the config check reports.
func DecodeSettingsAt(settings Settings, dst any, at string) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("DecodeSettings needs a pointer to a struct, not %T", dst)
	}
	d := settingsDecoder{}
	m := map[string]any(settings)
	if m == nil {
		m = map[string]any{}
	}
	d.structure(m, v.Elem(), at)
	if len(d.errs) > 0 {
		return d.errs
	}
	return nil
}

type settingsDecoder struct{ errs SettingErrors }

func (d *settingsDecoder) fail(key, format string, args ...any) {
	d.errs = append(d.errs, &SettingError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeFor[time.Duration]()

func (d *settingsDecoder) decode(val any, v reflect.Value, key string) {
	if val == nil {
		return // `key:` with nothing after it keeps the default
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.duration(val, v, key)
		return
	case t.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(val, v.Elem(), key)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			d.fail(key, "must be a mapping of %s, not %s", strings.Join(SettingKeys(t), ", "), describeValue(val))
			return
		}
		d.structure(m, v, key)
	case reflect.Map:
		m, ok := val.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			d.fail(key, "must be a mapping (name: value, ...), not %s", describeValue(val))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
		for _, k := range slices.Sorted(mapKeys(m)) {
			elem := reflect.New(t.Elem()).Elem()
			d.decode(m[k], elem, join(key, k))
			v.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), elem)
		}
	case reflect.Slice:
		list, ok := val.([]any)
		if !ok {
			if t.Elem().Kind() == reflect.String {
				d.fail(key, "must be a list such as [a, b], not %s", describeValue(val))
			} else {
				d.fail(key, "must be a list (each entry starting with \"- \"), not %s", describeValue(val))
			}
			return
		}
		out := reflect.MakeSlice(t, len(list), len(list))
		for i, x := range list {
			d.decode(x, out.Index(i), fmt.Sprintf("%s[%d]", key, i))
		}
		v.Set(out)
	case reflect.String:
		switch x := val.(type) {
		case string:
			v.SetString(x)
		case bool, int64, uint64, float64:
			v.SetString(fmt.Sprint(x)) // a number or a boolean where text is expected is taken as text
		default:
			d.fail(key, "must be text, not %s", describeValue(val))
		}
	case reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			d.fail(key, "must be true or false, not %s", describeValue(val))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := wholeNumber(val)
		if !ok {
			d.fail(key, "must be a whole number, not %s", describeValue(val))
			return
		}
		if v.OverflowInt(n) {
			d.fail(key, "%d is too large", n)
			return
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := wholeNumber(val)
		if !ok || n < 0 {
			d.fail(key, "must be a whole number of zero or more, not %s", describeValue(val))
			return
		}
		if v.OverflowUint(uint64(n)) {
			d.fail(key, "%d is too large", n)
			return
		}
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		switch x := val.(type) {
		case float64:
			v.SetFloat(x)
		case int64:
			v.SetFloat(float64(x))
		case uint64:
			v.SetFloat(float64(x))
		default:
			d.fail(key, "must be a number such as 0.5, not %s", describeValue(val))
		}
	case reflect.Interface:
		if t.NumMethod() == 0 {
			v.Set(reflect.ValueOf(val))
			return
		}
		d.fail(key, "cannot be set in a config file") // a field type this decoder does not know: a bug in the kind
	default:
		d.fail(key, "cannot be set in a config file")
	}
}

func (d *settingsDecoder) duration(val any, v reflect.Value, key string) {
	const hint = "write a number with a unit, such as 30s, 10m or 1h30m"
	switch x := val.(type) {
	case string:
		dur, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			d.fail(key, "%q is not a duration; %s", x, hint)
			return
		}
		v.SetInt(int64(dur))
	case int64, uint64:
		if n, _ := wholeNumber(x); n == 0 {
			v.SetInt(0)
			return
		}
		d.fail(key, "%v has no unit; %s", x, hint)
	default:
		d.fail(key, "must be a duration (%s), not %s", hint, describeValue(val))
	}
}

// structure decodes a mapping into a struct, field by yaml tag; keys are
// visited in sorted order so errors come in a stable order.
func (d *settingsDecoder) structure(m map[string]any, v reflect.Value, key string) {
	t := v.Type()
	fields := map[string]int{}
	for i := range t.NumField() {
		if name := YAMLName(t.Field(i)); name != "" {
			fields[name] = i
		}
	}
	valid := SettingKeys(t)
	for _, k := range slices.Sorted(mapKeys(m)) {
		i, ok := fields[k]
		if !ok {
			d.fail(join(key, k), "unknown key%s; valid keys%s: %s", Suggest(k, valid), where(key), strings.Join(valid, ", "))
			continue
		}
		d.decode(m[k], v.Field(i), join(key, k))
	}
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func wholeNumber(val any) (int64, bool) {
	switch x := val.(type) {
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}

// describeValue names a value for messages: `"lots"`, `a list`, `a mapping`.
func describeValue(val any) string {
	switch x := val.(type) {
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	case string:
		return strconv.Quote(x)
	}
	return fmt.Sprint(val)
}

func join(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func where(key string) string {
	if key == "" {
		return ""
	}
	return " in " + key
}

// YAMLName is the key a struct field is configured by (its yaml tag), or
// "" for a field config does not set (unexported, or tagged "-"). The
// config loader reads broker config the same way.
func YAMLName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// SettingKeys lists the keys a settings struct type accepts (its yaml tags),
// in declaration order. t may be a pointer to the struct.
func SettingKeys(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var keys []string
	for i := range t.NumField() {
		if name := YAMLName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

// Suggest returns ` (did you mean "x"?)` for the valid key closest to k, if
// one is close, for messages about unknown keys.
func Suggest(k string, valid []string) string {
	type cand struct {
		key  string
		dist int
	}
	var cands []cand
	for _, v := range valid {
		dist := editDistance(strings.ToLower(k), v)
		if dist <= max(1, len(v)/3) || strings.ReplaceAll(strings.ToLower(k), "-", "_") == v {
			cands = append(cands, cand{v, dist})
		}
	}
	if len(cands) == 0 {
		return ""
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].dist < cands[j].dist })
	return fmt.Sprintf(" (did you mean %q?)", cands[0].key)
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of neighbours ("levle") cost 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// Kinds that keep their settings in Settings declare them here, from their
// package's init, so that the config is checked as strictly for them as for
// the built-in kinds without opening a resource (`airlock config check`
// resolves no secret), and so that a key of theirs on another kind's
// resource is refused with a sentence naming its owner:
//
//	func init() { tools.RegisterSettings("http", Settings{}, GrantSettings{}) }
var settingsRegistry struct {
	sync.Mutex
	kinds map[string]KindSettings
}

// KindSettings are the settings types a kind registered.
type KindSettings struct {
	// Resource and Grant are the struct types of a resource entry's and a
	// grant's kind-specific keys; nil when the kind has none there.
	Resource, Grant reflect.Type
}

// RegisterSettings declares the settings of kind: resource and grant are
// struct values (or nil) whose yaml tags name the keys a resource entry and
// a grant of that kind take besides the common ones (name, kind,
// description, labels, grants, mask; ttl). Call it from the kind package's
// init; it panics on a duplicate kind, a kind built into ResourceSpec
// (postgres, ssh, kubernetes), a prototype that is not a struct, and a key
// that is already a field of ResourceSpec (or Grant): the config decoder
// would fill that field and never hand the key to the kind.
func RegisterSettings(kind string, resource, grant any) {
	if kind == "" || slices.Contains(typedKinds, kind) {
		panic(fmt.Sprintf("tools.RegisterSettings(%q): the kind's settings are fields of ResourceSpec", kind))
	}
	ks := KindSettings{Resource: structType(kind, resource), Grant: structType(kind, grant)}
	for _, c := range []struct {
		t, fields reflect.Type
	}{{ks.Resource, reflect.TypeFor[ResourceSpec]()}, {ks.Grant, reflect.TypeFor[Grant]()}} {
		if c.t == nil {
			continue
		}
		taken := SettingKeys(c.fields)
		for _, k := range SettingKeys(c.t) {
			if slices.Contains(taken, k) {
				// The config decoder would put it in the field, never in
				// Settings.
				panic(fmt.Sprintf("tools.RegisterSettings(%q): key %q is a field of %s; name it otherwise", kind, k, c.fields.Name()))
			}
		}
	}
	settingsRegistry.Lock()
	defer settingsRegistry.Unlock()
	if _, dup := settingsRegistry.kinds[kind]; dup {
		panic(fmt.Sprintf("tools.RegisterSettings(%q): already registered", kind))
	}
	if settingsRegistry.kinds == nil {
		settingsRegistry.kinds = map[string]KindSettings{}
	}
	settingsRegistry.kinds[kind] = ks
}

func structType(kind string, prototype any) reflect.Type {
	if prototype == nil {
		return nil
	}
	t := reflect.TypeOf(prototype)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("tools.RegisterSettings(%q): a prototype must be a struct, not %T", kind, prototype))
	}
	return t
}

// RegisteredSettings returns the settings kind registered, if it did.
func RegisteredSettings(kind string) (KindSettings, bool) {
	settingsRegistry.Lock()
	defer settingsRegistry.Unlock()
	ks, ok := settingsRegistry.kinds[kind]
	return ks, ok
}

// RegisteredKinds lists the kinds that registered their settings, sorted.
func RegisteredKinds() []string {
	settingsRegistry.Lock()
	defer settingsRegistry.Unlock()
	names := make([]string, 0, len(settingsRegistry.kinds))
	for k := range settingsRegistry.kinds {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// SettingOwner is the registered kind whose resource (or, with grant,
// grant) settings include key; "" when none has it.
func SettingOwner(key string, grant bool) string {
	for _, kind := range RegisteredKinds() {
		ks, _ := RegisteredSettings(kind)
		t := ks.Resource
		if grant {
			t = ks.Grant
		}
		if t != nil && slices.Contains(SettingKeys(t), key) {
			return kind
		}
	}
	return ""
}
