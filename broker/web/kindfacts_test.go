package web

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

// gadgetFacts are the facts of a kind this package knows nothing about.
type gadgetFacts struct {
	Verb  string   `expr:"verb" json:"verb"`
	Paths []string `expr:"paths" json:"paths"`
	Size  int      `expr:"size" json:"size"`
}

func init() { policy.RegisterFacts("gadget", gadgetFacts{}) }

// A registered kind's facts, as call.decided records them (masked JSON),
// read back and listed under the names rules use.
func TestViewKindFacts(t *testing.T) {
	recorded, err := json.Marshal(map[string]any{"facts": policy.FactsOf("gadget", gadgetFacts{Verb: "put", Paths: []string{"/a"}, Size: 12345678901})})
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Facts policy.Facts `json:"facts"`
	}
	if err := json.Unmarshal(recorded, &d); err != nil {
		t.Fatal(err)
	}
	got := viewKindFacts(d.Facts)
	want := &kindFactsView{Name: "gadget", Facts: []kv{{"gadget.paths", `["/a"]`}, {"gadget.size", "12345678901"}, {"gadget.verb", "put"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if v := viewKindFacts(policy.Facts{Shell: &policy.Shell{}}); v != nil {
		t.Errorf("shell facts listed as a registered kind's: %+v", v)
	}
}
