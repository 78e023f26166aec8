package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/airlock-mcp/airlock/tools"
)

// decoder reads a parsed config file into a Config key by key, so that one
// pass finds every unknown key and every value of the wrong type, each with
// its line and the key as the file spells it ("resources[1].grants.ro.ttl"),
// in words rather than Go types. A value that does not decode leaves the
// field as it was (the embedded default), and decoding goes on.
type decoder struct {
	source  string
	anchors map[string]ast.Node
	errs    []*Error
}

var durationType = reflect.TypeFor[time.Duration]()

func (d *decoder) fail(node ast.Node, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{Source: d.source, Key: key, Line: nodeLine(node), Msg: fmt.Sprintf(format, args...)})
}

// collectAnchors records every `&name` in the file so aliases resolve.
func (d *decoder) collectAnchors(node ast.Node) {
	ast.Walk(visitor(func(n ast.Node) {
		if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
			d.anchors[a.Name.String()] = a.Value
		}
	}), node)
}

type visitor func(ast.Node)

func (v visitor) Visit(n ast.Node) ast.Visitor { v(n); return v }

// resolve looks through anchors, aliases and tags to the node that holds
// the value.
func (d *decoder) resolve(node ast.Node) ast.Node {
	for i := 0; i < 16; i++ { // an alias chain longer than this is a loop
		switch n := node.(type) {
		case *ast.AnchorNode:
			node = n.Value
		case *ast.AliasNode:
			target, ok := d.anchors[n.Value.String()]
			if !ok {
				return nil
			}
			node = target
		case *ast.TagNode:
			node = n.Value
		default:
			return node
		}
	}
	return node
}

// decode reads node into v (addressable). key names the value in messages.
func (d *decoder) decode(node ast.Node, v reflect.Value, key string) {
	raw := node
	node = d.resolve(node)
	if node == nil {
		if a, ok := raw.(*ast.AliasNode); ok {
			d.fail(raw, key, "the alias *%s names no anchor (&%s) defined before it", a.Value.String(), a.Value.String())
		}
		return
	}
	if _, ok := node.(*ast.NullNode); ok {
		return // `key:` with nothing after it keeps the default
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.duration(node, v, key)
		return
	case t.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(node, v.Elem(), key)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.structure(node, v, key)
	case reflect.Map:
		d.mapping(node, v, key)
	case reflect.Slice:
		d.sequence(node, v, key)
	case reflect.String:
		s, ok := scalarText(node)
		if !ok {
			d.fail(node, key, "must be text, not %s", describe(node))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := node.(*ast.BoolNode)
		if !ok {
			d.fail(node, key, "must be true or false, not %s", describe(node))
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := integer(node)
		if !ok {
			d.fail(node, key, "must be a whole number, not %s", describe(node))
			return
		}
		if v.OverflowInt(n) {
			d.fail(node, key, "%d is too large", n)
			return
		}
		v.SetInt(n)
	case reflect.Float64:
		switch n := node.(type) {
		case *ast.FloatNode:
			v.SetFloat(n.Value)
		default:
			i, ok := integer(node)
			if !ok {
				d.fail(node, key, "must be a number such as 0.5, not %s", describe(node))
				return
			}
			v.SetFloat(float64(i))
		}
	default:
		d.fail(node, key, "cannot be set in a config file") // a field type this decoder does not know: a bug
	}
}

func (d *decoder) duration(node ast.Node, v reflect.Value, key string) {
	const hint = "write a number with a unit, such as 30s, 10m or 1h30m"
	switch n := node.(type) {
	case *ast.StringNode:
		dur, err := time.ParseDuration(strings.TrimSpace(n.Value))
		if err != nil {
			d.fail(node, key, "%q is not a duration; %s", n.Value, hint)
			return
		}
		v.SetInt(int64(dur))
	case *ast.IntegerNode:
		if i, _ := integer(node); i == 0 {
			v.SetInt(0)
			return
		}
		d.fail(node, key, "%s has no unit; %s", n.GetToken().Value, hint)
	default:
		d.fail(node, key, "must be a duration (%s), not %s", hint, describe(node))
	}
}

// structure decodes a mapping into a struct, field by yaml tag.
func (d *decoder) structure(node ast.Node, v reflect.Value, key string) {
	mvs, ok := d.mappingValues(node)
	if !ok {
		d.fail(node, key, "must be a mapping of %s, not %s", strings.Join(tools.SettingKeys(v.Type()), ", "), describe(node))
		return
	}
	t := v.Type()
	fields := map[string]int{}
	rest := -1 // a tools.Settings field: it keeps the keys no field names
	for i := range t.NumField() {
		if name := tools.YAMLName(t.Field(i)); name != "" {
			fields[name] = i
		} else if t.Field(i).Type == settingsType {
			rest = i
		}
	}
	seen := map[string]bool{}
	for _, mv := range mvs {
		k := keyText(mv)
		sub := join(key, k)
		i, ok := fields[k]
		if !ok && rest >= 0 {
			// A kind's own setting (ResourceSpec.Settings, Grant.Settings):
			// validation checks it against the kind (resources.go).
			if seen[k] {
				d.fail(mv.Key, sub, "is set twice; keep one")
				continue
			}
			seen[k] = true
			if val, ok := d.plain(mv.Value, sub); ok {
				st := v.Field(rest)
				if st.IsNil() {
					st.Set(reflect.MakeMap(settingsType))
				}
				st.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(&val).Elem())
			}
			continue
		}
		if !ok {
			d.fail(mv.Key, sub, "unknown key%s; valid keys%s: %s", tools.Suggest(k, tools.SettingKeys(t)), where(key), strings.Join(tools.SettingKeys(t), ", "))
			continue
		}
		if seen[k] {
			d.fail(mv.Key, sub, "is set twice; keep one")
			continue
		}
		seen[k] = true
		d.decode(mv.Value, v.Field(i), sub)
	}
}

var settingsType = reflect.TypeFor[tools.Settings]()

// plain is a value as tools.Settings holds it: string, int64 (uint64 beyond
// int64), float64, bool, nil, []any or map[string]any, with anchors,
// aliases and merge keys resolved. A value that is none of these (a key
// set twice, an alias to nothing) is reported and false returned.
func (d *decoder) plain(node ast.Node, key string) (any, bool) {
	raw := node
	node = d.resolve(node)
	switch n := node.(type) {
	case nil:
		if a, ok := raw.(*ast.AliasNode); ok {
			d.fail(raw, key, "the alias *%s names no anchor (&%s) defined before it", a.Value.String(), a.Value.String())
			return nil, false
		}
		return nil, true
	case *ast.NullNode:
		return nil, true
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		return n.Value.Value, true
	case *ast.BoolNode:
		return n.Value, true
	case *ast.IntegerNode:
		if i, ok := integer(n); ok {
			return i, true
		}
		if u, ok := n.Value.(uint64); ok {
			return u, true
		}
		d.fail(node, key, "%s is too large", n.GetToken().Value)
		return nil, false
	case *ast.FloatNode:
		return n.Value, true
	case *ast.SequenceNode:
		out := make([]any, len(n.Values))
		ok := true
		for i, x := range n.Values {
			var good bool
			out[i], good = d.plain(x, fmt.Sprintf("%s[%d]", key, i))
			ok = ok && good
		}
		return out, ok
	case *ast.MappingNode, *ast.MappingValueNode:
		mvs, _ := d.mappingValues(node)
		out := make(map[string]any, len(mvs))
		ok := true
		for _, mv := range mvs {
			k := keyText(mv)
			if _, dup := out[k]; dup {
				d.fail(mv.Key, join(key, k), "is set twice; keep one")
				ok = false
				continue
			}
			var good bool
			out[k], good = d.plain(mv.Value, join(key, k))
			ok = ok && good
		}
		return out, ok
	}
	if s, ok := scalarText(node); ok {
		return s, true
	}
	d.fail(node, key, "cannot be read: %s", describe(node))
	return nil, false
}

// mapping decodes a mapping into a map with string keys. Each entry is
// decoded fresh: an entry of the file replaces a default of the same name.
func (d *decoder) mapping(node ast.Node, v reflect.Value, key string) {
	mvs, ok := d.mappingValues(node)
	if !ok {
		d.fail(node, key, "must be a mapping (name: value, ...), not %s", describe(node))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]bool{}
	for _, mv := range mvs {
		k := keyText(mv)
		sub := join(key, k)
		if seen[k] {
			d.fail(mv.Key, sub, "is set twice; keep one")
			continue
		}
		seen[k] = true
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(mv.Value, elem, sub)
		v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), elem)
	}
}

// sequence decodes a list into a slice, replacing what was there.
func (d *decoder) sequence(node ast.Node, v reflect.Value, key string) {
	seq, ok := node.(*ast.SequenceNode)
	if !ok {
		if v.Type().Elem().Kind() == reflect.String {
			d.fail(node, key, "must be a list such as [a, b], not %s", describe(node))
		} else {
			d.fail(node, key, "must be a list (each entry starting with \"- \"), not %s", describe(node))
		}
		return
	}
	out := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	for i, n := range seq.Values {
		d.decode(n, out.Index(i), fmt.Sprintf("%s[%d]", key, i))
	}
	v.Set(out)
}

// mappingValues returns a mapping's entries with YAML merge keys (`<<:
// *base`) expanded: the merged entries come first, so the mapping's own
// keys win.
func (d *decoder) mappingValues(node ast.Node) ([]*ast.MappingValueNode, bool) {
	var mvs []*ast.MappingValueNode
	switch n := node.(type) {
	case *ast.MappingNode:
		mvs = n.Values
	case *ast.MappingValueNode:
		mvs = []*ast.MappingValueNode{n}
	default:
		return nil, false
	}
	var merged, own []*ast.MappingValueNode
	for _, mv := range mvs {
		if mv.Key != nil && mv.Key.IsMergeKey() {
			if sub, ok := d.mappingValues(d.resolve(mv.Value)); ok {
				merged = append(merged, sub...)
			}
			continue
		}
		own = append(own, mv)
	}
	if len(merged) == 0 {
		return own, true
	}
	// Merged keys the mapping sets itself are dropped.
	set := map[string]bool{}
	for _, mv := range own {
		set[keyText(mv)] = true
	}
	out := slices.DeleteFunc(merged, func(mv *ast.MappingValueNode) bool { return set[keyText(mv)] })
	return append(out, own...), true
}

func keyText(mv *ast.MappingValueNode) string {
	if s, ok := mv.Key.(ast.ScalarNode); ok {
		if text, ok := scalarText(s); ok {
			return text
		}
	}
	return strings.TrimSpace(mv.Key.String())
}

// scalarText is the text of a scalar as the user wrote it (a number or a
// boolean where text is expected is taken as written).
func scalarText(node ast.Node) (string, bool) {
	switch n := node.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		return n.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

func integer(node ast.Node) (int64, bool) {
	n, ok := node.(*ast.IntegerNode)
	if !ok {
		return 0, false
	}
	switch x := n.Value.(type) {
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	}
	i, err := strconv.ParseInt(n.GetToken().Value, 0, 64)
	return i, err == nil
}

// describe names a value for messages: `"lots"`, `a list`, `a mapping`.
func describe(node ast.Node) string {
	switch n := node.(type) {
	case *ast.SequenceNode:
		return "a list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.StringNode:
		return strconv.Quote(n.Value)
	case *ast.LiteralNode:
		return "a block of text"
	}
	if s, ok := scalarText(node); ok {
		return s
	}
	return strings.TrimSpace(node.String())
}

func join(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func where(key string) string {
	if key == "" {
		return " at the top level"
	}
	return " in " + key
}

// nodeLine is the 1-based line a node starts on, or 0.
func nodeLine(node ast.Node) int {
	if node == nil {
		return 0
	}
	if mv, ok := node.(*ast.MappingNode); ok && len(mv.Values) > 0 {
		node = mv.Values[0].Key
	}
	if mv, ok := node.(*ast.MappingValueNode); ok {
		node = mv.Key
	}
	if tk := node.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}
