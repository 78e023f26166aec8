package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
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
		d.fail(node, key, "must be a mapping of %s, not %s", strings.Join(structKeys(v.Type()), ", "), describe(node))
		return
	}
	t := v.Type()
	fields := map[string]int{}
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			fields[name] = i
		}
	}
	seen := map[string]bool{}
	for _, mv := range mvs {
		k := keyText(mv)
		sub := join(key, k)
		i, ok := fields[k]
		if !ok {
			d.fail(mv.Key, sub, "unknown key%s; valid keys%s: %s", suggest(k, structKeys(t)), where(key), strings.Join(structKeys(t), ", "))
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

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// structKeys lists the keys a struct type accepts, in declaration order.
func structKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

// suggest returns ` (did you mean "x"?)` for the closest valid key, if one
// is close.
func suggest(k string, valid []string) string {
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
