package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The tool schemas are what every agent sees; a change to them is a change
// to airlock's interface. Regenerate with UPDATE_GOLDEN=1 go test ./cmd/airlock/.
func TestToolSchemasGolden(t *testing.T) {
	type tool struct {
		Name        string          `json:"name"`
		Kind        string          `json:"kind"`
		ReadOnly    bool            `json:"read_only"`
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
	}
	var list []tool
	for _, t := range allTools() {
		list = append(list, tool{t.Name(), t.Kind(), t.ReadOnly(), t.Description(), t.InputSchema()})
	}
	got, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "tools.json")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with UPDATE_GOLDEN=1)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("tool schemas changed; review the diff and run UPDATE_GOLDEN=1 go test ./cmd/airlock/\n%s", got)
	}
	for _, tl := range list {
		var schema map[string]any
		if err := json.Unmarshal(tl.InputSchema, &schema); err != nil || schema["type"] != "object" {
			t.Errorf("%s: input schema is not a JSON object schema: %s", tl.Name, tl.InputSchema)
		}
	}
}
