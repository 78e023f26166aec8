package policy

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// This file holds the small amount of YAML handling Parse and ParseCases
// share: parse to an AST (so every problem has a line), check mapping keys
// against the fields a struct accepts (so an error can say what is valid), and
// decode one node strictly.

// parseDocument parses data and returns the body of its only document: nil
// when the file is empty or holds only comments.
func parseDocument(data []byte, source string) (ast.Node, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, &LoadError{Source: source, Line: yamlErrorLine(err), Err: errors.New(yamlErrorMessage(err))}
	}
	var bodies []ast.Node
	for _, doc := range f.Docs {
		if doc.Body != nil {
			bodies = append(bodies, doc.Body)
		}
	}
	switch len(bodies) {
	case 0:
		return nil, nil
	case 1:
		return bodies[0], nil
	default:
		return nil, &LoadError{Source: source, Line: nodeLine(bodies[1]), Err: errors.New("more than one YAML document; put everything in one")}
	}
}

// mappingValues returns the key/value pairs of a mapping node, and false when
// node is not a mapping.
func mappingValues(node ast.Node) ([]*ast.MappingValueNode, bool) {
	switch n := node.(type) {
	case *ast.MappingNode:
		return n.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{n}, true
	}
	return nil, false
}

// isNull reports whether node is absent or an explicit null.
func isNull(node ast.Node) bool {
	if node == nil {
		return true
	}
	_, ok := node.(*ast.NullNode)
	return ok
}

// keyName is the text of a mapping key.
func keyName(mv *ast.MappingValueNode) string {
	if tk := mv.Key.GetToken(); tk != nil {
		return tk.Value
	}
	return mv.Key.String()
}

// nodeLine is the 1-based line a node starts on, or 0.
func nodeLine(node ast.Node) int {
	if node == nil {
		return 0
	}
	if mvs, ok := mappingValues(node); ok && len(mvs) > 0 {
		// A block mapping's own token can sit before its first key; the
		// first key is where a reader looks.
		node = mvs[0].Key
	}
	if tk := node.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// field is one key of a mapping, located.
type field struct {
	key   string
	line  int
	value ast.Node
}

// fields returns the keys of a mapping in order, or an error naming the first
// key that is not in allowed, together with the list of valid keys.
func fields(node ast.Node, allowed []string, what string) ([]field, *located) {
	mvs, ok := mappingValues(node)
	if !ok {
		return nil, &located{line: nodeLine(node), err: fmt.Errorf("%s must be a mapping of %s, not %s", what, validKeys(allowed), describeNode(node))}
	}
	out := make([]field, 0, len(mvs))
	for _, mv := range mvs {
		k := keyName(mv)
		if k == "" || !slices.Contains(allowed, k) {
			return nil, &located{line: nodeLine(mv.Key), err: fmt.Errorf("unknown key %q in %s; valid keys are %s", k, what, validKeys(allowed))}
		}
		out = append(out, field{key: k, line: nodeLine(mv.Key), value: mv.Value})
	}
	return out, nil
}

// located is an error with the line it was found on, before the caller
// attaches the rule or case it belongs to.
type located struct {
	line int
	err  error
}

// lookup returns the named field, if present.
func lookup(fs []field, key string) (field, bool) {
	for _, f := range fs {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

// scalarString returns a scalar node's text for use in messages (names of
// rules that failed to decode).
func scalarString(node ast.Node) string {
	if s, ok := node.(ast.ScalarNode); ok {
		if v, ok := s.GetValue().(string); ok {
			return v
		}
	}
	return ""
}

// decodeInto decodes node into dst (an addressable value). Structs are
// decoded key by key, recursively, so every error carries the line of the
// value at fault (go-yaml reports some, such as an invalid duration, without
// a position) and an unknown key is reported with the keys that are valid.
// what names the mapping in messages ("limits").
func decodeInto(node ast.Node, dst reflect.Value, what string) []*located {
	if isNull(node) {
		return nil
	}
	t := dst.Type()
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		v := reflect.New(t.Elem())
		problems := decodeInto(node, v.Elem(), what)
		dst.Set(v)
		return problems
	}
	if t.Kind() != reflect.Struct {
		if err := yaml.NodeToValue(node, dst.Addr().Interface(), yaml.DisallowUnknownField()); err != nil {
			line := yamlErrorLine(err)
			if line == 0 {
				line = nodeLine(node)
			}
			return []*located{{line: line, err: fmt.Errorf("%s: %s", what, yamlErrorMessage(err))}}
		}
		return nil
	}
	keys := yamlKeys(dst.Interface())
	fs, lerr := fields(node, keys, what)
	if lerr != nil {
		return []*located{lerr}
	}
	var problems []*located
	for _, f := range fs {
		problems = append(problems, decodeInto(f.value, dst.Field(slices.Index(keys, f.key)), f.key)...)
	}
	return problems
}

// yamlErrorLine digs the line out of a go-yaml error.
func yamlErrorLine(err error) int {
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return tk.Position.Line
		}
	}
	return 0
}

// yamlErrorMessage is a go-yaml error without its "[line:col]" prefix (the
// LoadError carries the line) and without a source excerpt.
func yamlErrorMessage(err error) string {
	var ye yaml.Error
	if errors.As(err, &ye) {
		return ye.GetMessage()
	}
	return err.Error()
}

// yamlKeys lists the yaml tag names of a struct's fields, by field index
// ("" for fields without one).
func yamlKeys(v any) []string {
	t := reflect.TypeOf(v)
	keys := make([]string, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "-" {
			keys[i] = name
		}
	}
	return keys
}

func describeNode(node ast.Node) string {
	switch node.(type) {
	case nil, *ast.NullNode:
		return "nothing"
	case *ast.SequenceNode:
		return "a list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.TagNode:
		return "a tagged value (a leading '!' is a YAML tag; quote the text)"
	default:
		return fmt.Sprintf("the value %s", strings.TrimSpace(node.String()))
	}
}

func validKeys(keys []string) string {
	return strings.Join(slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "" }), ", ")
}

// nameOf returns the name key of a mapping node, so a rule or case can be
// named in errors even when the rest of it does not decode.
func nameOf(node ast.Node) string {
	mvs, _ := mappingValues(node)
	for _, mv := range mvs {
		if keyName(mv) == "name" {
			return strings.TrimSpace(scalarString(mv.Value))
		}
	}
	return ""
}
