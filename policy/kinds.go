package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr/builtin"
)

// A kind that is not built into this package (sql, shell and k8s are
// fields of Input) declares its facts type here, from its package's init:
//
//	func init() { policy.RegisterFacts("http", HTTP{}) }
//
// and its tools return policy.FactsOf("http", HTTP{...}) from Facts. Rules
// then read http.method, type-checked at load like sql.read_only.
//
// How: a rule is compiled against Input first. Only when that fails and
// kinds are registered is it compiled against the kind environment, a
// struct type made with reflect.StructOf whose first field embeds Input
// (its fields promoted, so identity, tool, sql... mean what they always
// mean) and which has one field per registered kind, tagged with its expr
// name. So a typo (http.methd) is still a load error naming the field, and
// rules that never mention a registered kind compile, run natively and cost
// exactly what they did. A policy with such rules evaluates every call in
// a pooled value of the kind environment: its Input is the Input the
// native code and the other rules read, and the call's registered facts
// are copied to where their field points (the other kinds' stay zero
// values, as sql does for an ssh call).
//
// The native code (native.go) reads a registered kind's string, bool, int
// and []string fields directly under its name from Input's copy of the
// facts, through reflect without allocating (kindFieldValue); other fields
// (maps, any, nested structs) leave the rule to the VM.

// reservedNames are the names of Input's own fields: no kind may take them.
var reservedNames = []string{"identity", "tool", "resource", "args", "now", "sql", "shell", "k8s"}

var kindName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// registry holds the registered kinds and the environment built for them.
var registry struct {
	sync.Mutex
	types map[string]reflect.Type // expr name → facts type
	env   *kindEnv                // for the kinds registered so far; nil before one is built
}

// RegisterFacts declares the facts type of a kind under its expr name
// ("http"), so rules can write http.method and are still type-checked at
// load. prototype is a struct value whose fields carry expr (and json)
// tags. Call it from the kind package's init; it panics on a duplicate or
// reserved name (identity, tool, resource, args, now, sql, shell, k8s), a
// name that is not lower-case letters, digits and '_' or that an expr
// builtin has, and a prototype that is not a struct.
func RegisterFacts(name string, prototype any) {
	t := reflect.TypeOf(prototype)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case !kindName.MatchString(name):
		panic(fmt.Sprintf("policy.RegisterFacts(%q): a kind's facts name is lower-case letters, digits and '_', starting with a letter", name))
	case slices.Contains(reservedNames, name):
		panic(fmt.Sprintf("policy.RegisterFacts(%q): the name is reserved (%v are the policy input's own)", name, reservedNames))
	case slices.Contains(builtin.Names, name):
		panic(fmt.Sprintf("policy.RegisterFacts(%q): the name is an expr builtin", name))
	case t == nil || t.Kind() != reflect.Struct:
		panic(fmt.Sprintf("policy.RegisterFacts(%q): the prototype must be a struct, not %T", name, prototype))
	}
	registry.Lock()
	defer registry.Unlock()
	if old, dup := registry.types[name]; dup {
		panic(fmt.Sprintf("policy.RegisterFacts(%q): already registered with %s", name, old))
	}
	if registry.types == nil {
		registry.types = map[string]reflect.Type{}
	}
	registry.types[name] = t
	registry.env = nil // the next policy compiles against an environment with it
}

// FactsOf returns the Facts a tool's Facts method returns for a registered
// kind: v (a value of the registered type, or a pointer to one) under
// name. Facts' JSON (recorded in transcripts, shown on the approval page)
// carries it as {"<name>": v}, like sql, shell and k8s. It panics when
// name is not registered or v is not of its type: a bug in the kind, which
// its first test finds.
func FactsOf(name string, v any) Facts {
	t := factsType(name)
	if t == nil {
		panic(fmt.Sprintf("policy.FactsOf(%q): no kind registered its facts under that name (policy.RegisterFacts)", name))
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Type().Elem() == t {
		rv = rv.Elem()
	}
	if !rv.IsValid() || rv.Type() != t {
		panic(fmt.Sprintf("policy.FactsOf(%q): facts are %T, not the registered %s", name, v, t))
	}
	return Facts{kind: name, value: rv.Interface()}
}

// Registered returns the facts of a registered kind (FactsOf): its expr
// name and value. ok is false for sql, shell and k8s facts and for none.
func (f Facts) Registered() (name string, value any, ok bool) {
	return f.kind, f.value, f.kind != ""
}

// RegisteredFacts lists the names of the registered kinds, sorted.
func RegisteredFacts() []string {
	registry.Lock()
	defer registry.Unlock()
	names := make([]string, 0, len(registry.types))
	for n := range registry.types {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func factsType(name string) reflect.Type {
	registry.Lock()
	defer registry.Unlock()
	return registry.types[name]
}

// builtinFacts are the facts kinds with a field in Facts.
var builtinFacts = []string{"sql", "shell", "k8s"}

// factsFields is Facts without its registered kind, for JSON.
type factsFields struct {
	SQL   *SQL   `json:"sql,omitempty"`
	Shell *Shell `json:"shell,omitempty"`
	K8s   *K8s   `json:"k8s,omitempty"`
}

// MarshalJSON encodes the facts as an object with one key per kind that has
// facts: {"sql": {...}} or {"http": {...}}.
func (f Facts) MarshalJSON() ([]byte, error) {
	out, err := json.Marshal(factsFields{SQL: f.SQL, Shell: f.Shell, K8s: f.K8s})
	if err != nil || f.kind == "" {
		return out, err
	}
	v, err := json.Marshal(f.value)
	if err != nil {
		return nil, err
	}
	name, _ := json.Marshal(f.kind)
	var b bytes.Buffer
	b.Write(out[:len(out)-1]) // without the closing brace
	if len(out) > 2 {
		b.WriteByte(',')
	}
	b.Write(name)
	b.WriteByte(':')
	b.Write(v)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads what MarshalJSON writes. A registered kind's facts
// are decoded into its type; facts of a kind this build has not registered
// are ignored (a transcript written by another build).
func (f *Facts) UnmarshalJSON(data []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	var ff factsFields
	if err := json.Unmarshal(data, &ff); err != nil {
		return err
	}
	*f = Facts{SQL: ff.SQL, Shell: ff.Shell, K8s: ff.K8s}
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		raw := all[name]
		if slices.Contains(builtinFacts, name) || f.kind != "" {
			continue // a call has the facts of one kind: the first registered one
		}
		t := factsType(name)
		if t == nil {
			continue
		}
		v := reflect.New(t)
		if err := json.Unmarshal(raw, v.Interface()); err != nil {
			return fmt.Errorf("%s facts: %w", name, err)
		}
		f.kind, f.value = name, v.Elem().Interface()
	}
	return nil
}

// decodeFacts reads the facts of one kind by name, as a case file gives
// them, strictly: a key the kind's facts do not have is an error.
func decodeFacts(name string, raw []byte) (Facts, error) {
	var t reflect.Type
	var f Facts
	var dst any
	switch name {
	case "sql":
		f.SQL = new(SQL)
		dst = f.SQL
	case "shell":
		f.Shell = new(Shell)
		dst = f.Shell
	case "k8s":
		f.K8s = new(K8s)
		dst = f.K8s
	default:
		if t = factsType(name); t == nil {
			known := append(slices.Clone(builtinFacts), RegisteredFacts()...)
			return Facts{}, fmt.Errorf("no kind has facts named %q (facts: %v)", name, known)
		}
		dst = reflect.New(t).Interface()
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return Facts{}, fmt.Errorf("%s facts: %s", name, strings.TrimPrefix(err.Error(), "json: "))
	}
	if t != nil {
		f.kind, f.value = name, reflect.ValueOf(dst).Elem().Interface()
	}
	return f, nil
}

// kindEnv is the expr environment of the kinds registered when it was
// built: struct { Input; <one field per kind, tagged with its name> }.
type kindEnv struct {
	typ    reflect.Type
	fields map[string]int // expr name → field index
	zero   any            // a zero value of typ, for expr.Env
	pool   sync.Pool      // of *kindValue
}

// kindValue is one pooled value of a kindEnv. Its kind fields are
// pointers, each to a value of its own that holds the call's facts or the
// zero value: a rule fetching http.method boxes a pointer, not the whole
// facts struct, and never meets a nil.
type kindValue struct {
	ptr   reflect.Value   // *struct
	in    *Input          // its embedded Input
	env   any             // ptr.Interface(), what the VM runs against
	facts []reflect.Value // by field index: the *T the field points to
}

var inputType = reflect.TypeFor[Input]()

// currentKindEnv returns the environment of the kinds registered so far,
// or nil when there are none.
func currentKindEnv() *kindEnv {
	registry.Lock()
	defer registry.Unlock()
	if registry.env != nil || len(registry.types) == 0 {
		return registry.env
	}
	names := make([]string, 0, len(registry.types))
	for n := range registry.types {
		names = append(names, n)
	}
	slices.Sort(names)
	sf := []reflect.StructField{{Name: "Input", Type: inputType, Anonymous: true, Tag: `expr:"-"`}}
	e := &kindEnv{fields: map[string]int{}}
	for i, n := range names {
		sf = append(sf, reflect.StructField{Name: fmt.Sprintf("Kind%d", i), Type: reflect.PointerTo(registry.types[n]), Tag: reflect.StructTag(fmt.Sprintf("expr:%q", n))})
		e.fields[n] = i + 1
	}
	e.typ = reflect.StructOf(sf)
	e.zero = reflect.Zero(e.typ).Interface()
	e.pool.New = func() any {
		p := reflect.New(e.typ)
		v := &kindValue{ptr: p, in: p.Elem().Field(0).Addr().Interface().(*Input), env: p.Interface(),
			facts: make([]reflect.Value, len(sf))}
		for i := 1; i < len(sf); i++ {
			v.facts[i] = reflect.New(sf[i].Type.Elem())
			p.Elem().Field(i).Set(v.facts[i])
		}
		return v
	}
	registry.env = e
	return e
}

// get returns a pooled value holding in, with in's registered facts in
// their field.
func (e *kindEnv) get(in *Input) *kindValue {
	v := e.pool.Get().(*kindValue)
	*v.in = *in
	if in.kind != "" {
		if i, ok := e.fields[in.kind]; ok {
			v.facts[i].Elem().Set(reflect.ValueOf(in.kindFacts))
		}
	}
	return v
}

// put clears v (dropping references to the call's data) and pools it.
func (e *kindEnv) put(v *kindValue) {
	*v.in = Input{}
	for _, f := range v.facts[1:] {
		f.Elem().SetZero()
	}
	e.pool.Put(v)
}

// kindFieldValue compiles a field of a registered kind's facts
// ("http.method") for the native code, when it is a string, a bool, an int
// or a list of strings: read through reflect from the call's facts, without
// allocating, and the zero value when the call has facts of another kind or
// none, as the kind environment's zero value gives the VM.
func kindFieldValue(path string) (value, bool) {
	name, field, ok := strings.Cut(path, ".")
	if !ok || strings.Contains(field, ".") {
		return value{}, false
	}
	t := factsType(name)
	if t == nil {
		return value{}, false
	}
	idx := -1
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		n := f.Tag.Get("expr")
		if n == "" {
			n = f.Name
		}
		if n == field {
			idx = i
			break
		}
	}
	if idx < 0 {
		return value{}, false
	}
	fetch := func(in *Input) (reflect.Value, bool) {
		if in.kind != name {
			return reflect.Value{}, false
		}
		return reflect.ValueOf(in.kindFacts).Field(idx), true
	}
	switch t.Field(idx).Type {
	case reflect.TypeFor[string]():
		return value{s: func(in *Input, _ elem) string {
			if f, ok := fetch(in); ok {
				return f.String()
			}
			return ""
		}}, true
	case reflect.TypeFor[bool]():
		return value{b: func(in *Input, _ elem) bool {
			if f, ok := fetch(in); ok {
				return f.Bool()
			}
			return false
		}}, true
	case reflect.TypeFor[int]():
		return value{i: func(in *Input, _ elem) int {
			if f, ok := fetch(in); ok {
				return int(f.Int())
			}
			return 0
		}}, true
	case reflect.TypeFor[[]string]():
		return value{ss: func(in *Input, _ elem) []string {
			if f, ok := fetch(in); ok {
				// The facts are not addressable: Interface shares them
				// rather than copying.
				return f.Interface().([]string)
			}
			return nil
		}}, true
	}
	return value{}, false
}
