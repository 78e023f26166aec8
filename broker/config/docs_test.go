package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/airlock-mcp/airlock/tools"
)

// configKeys lists every key a config file can set, as docs/config.md
// writes it: "resources[].grants.<name>.ttl". Both mappings and their
// leaves are keys.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := tools.YAMLName(f)
		if name == "" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		keys = append(keys, path)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == reflect.TypeFor[time.Duration]():
		case ft.Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft, path)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft.Elem(), path+"[]")...)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft.Elem(), path+".<name>")...)
		}
	}
	return keys
}

// defaultValues flattens defaults.yaml to key → value as written there.
func defaultValues(t *testing.T) map[string]string {
	file, err := parser.ParseBytes(defaultsYAML, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(node ast.Node, prefix string)
	walk = func(node ast.Node, prefix string) {
		d := &decoder{}
		if mvs, ok := d.mappingValues(node); ok {
			for _, mv := range mvs {
				walk(mv.Value, join(prefix, keyText(mv)))
			}
			return
		}
		if s, ok := scalarText(node); ok && s != "" {
			out[prefix] = s
		}
	}
	walk(file.Docs[0].Body, "")
	return out
}

var docRow = regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]+) \\| ([^|]+) \\|")

// docs/config.md documents every key of the configuration, and nothing that
// is not one, with the embedded defaults as its defaults.
func TestConfigReferenceIsComplete(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(doc), "\n") {
		if m := docRow.FindStringSubmatch(line); m != nil {
			rows[m[1]] = []string{strings.TrimSpace(m[2]), strings.TrimSpace(m[3])}
		}
	}
	keys := configKeys(reflect.TypeFor[Config](), "")
	for _, want := range []string{"resources[].shell", "resources[].grants.<name>.ttl", "masking.profiles.<name>.enforce", "auth.oidc.clock_skew", "approvals.webhooks[].format"} {
		if !slices.Contains(keys, want) {
			t.Fatalf("configKeys misses %s: %v", want, keys)
		}
	}
	for _, k := range keys {
		row, ok := rows[k]
		switch {
		case !ok:
			t.Errorf("docs/config.md does not document %s: add a row | `%s` | type | default | example |", k, k)
		case row[0] == "" || row[1] == "":
			t.Errorf("docs/config.md: %s has no type or default", k)
		}
	}
	for k := range rows {
		if !slices.Contains(keys, k) {
			t.Errorf("docs/config.md documents %s, which is not a config key", k)
		}
	}
	for k, v := range defaultValues(t) {
		if row, ok := rows[k]; ok && !strings.Contains(row[1], "`"+v+"`") {
			t.Errorf("docs/config.md: the default of %s is %q, not %q", k, v, row[1])
		}
	}
}
