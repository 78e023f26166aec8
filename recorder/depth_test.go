package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Red team 4: a backend's answer can nest 9,999 levels deep (encoding/json
// decodes it: its limit is 10,000) in 20 KB, under the size cap. Recorded
// as {"result":{"body":…}} it went past the depth event data may have, so
// the call's result was withheld after the request ran, with "the store is
// unavailable". CapJSON now gives such a value in its truncated form,
// which records.
func TestCapJSONTooDeepIsRecordable(t *testing.T) {
	var body any
	if err := json.Unmarshal([]byte(strings.Repeat("[", 9999)+strings.Repeat("]", 9999)), &body); err != nil {
		t.Fatal(err)
	}
	result := CapJSON(map[string]any{"body": body}, 64<<10)
	var c capped
	if err := json.Unmarshal(result, &c); err != nil || !c.Truncated || c.Bytes != len(`{"body":}`)+2*9999 || !strings.HasPrefix(c.Preview, `{"body":[[[`) {
		t.Fatalf("CapJSON of 10,000 levels = %.80s… (%v), want the truncated form", result, err)
	}
	data, err := json.Marshal(map[string]any{"result": result})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newRecorder(t, sqliteBackend)
	if _, err := r.Append(t.Context(), Event{Type: TypeCallCompleted, CallID: "c1", Data: data}); err != nil {
		t.Fatalf("the capped result of a call cannot be recorded: %v", err)
	}
}

// Nesting up to MaxDepth is kept whole; one level more is cut.
func TestCapJSONDepthBoundary(t *testing.T) {
	nested := func(levels int) any {
		var v any
		if err := json.Unmarshal([]byte(strings.Repeat(`{"a":`, levels-1)+"[]"+strings.Repeat("}", levels-1)), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := CapJSON(nested(MaxDepth), 64<<10); strings.Contains(string(got), `"truncated"`) {
		t.Errorf("%d levels were cut: %.80s…", MaxDepth, got)
	}
	if got := CapJSON(nested(MaxDepth+1), 64<<10); !strings.HasPrefix(string(got), `{"truncated":true`) {
		t.Errorf("%d levels were kept whole: %.80s…", MaxDepth+1, got)
	}
	// Many brackets side by side are not depth.
	wide := make([]any, 3*MaxDepth)
	for i := range wide {
		wide[i] = []any{map[string]any{}}
	}
	if got := CapJSON(wide, 64<<10); strings.Contains(string(got), `"truncated"`) {
		t.Errorf("a wide, shallow value was cut: %.80s…", got)
	}
}

// Red team 4: object names are sorted as RFC 8785 sorts them, by UTF-16
// code units, where encoding/json sorted map keys by UTF-8 bytes. The two
// differ only for names with characters from U+E000 to U+FFFF beside ones
// past U+FFFF; data is hashed as stored, so either order verifies, and the
// canonical form is a fixed point.
func TestCanonicalJSONNameOrderIsRFC8785(t *testing.T) {
	got, err := canonicalJSON(json.RawMessage(`{"arguments":{"resource":"db","｡":1,"😀":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	// U+1F600 is the surrogate pair D83D DE00; U+FF61 is FF61: D83D < FF61.
	if want := `{"arguments":{"resource":"db","😀":2,"｡":1}}`; string(got) != want {
		t.Fatalf("canonicalJSON = %s, want %s", got, want)
	}
}

// Data nested up to maxDataDepth is recorded, and its export reads back
// and verifies (a line is one level deeper than its data: data at 10,000
// levels, which encoding/json decodes, made an export it could not read);
// one level more is refused.
func TestDataDepthBoundaryAndExport(t *testing.T) {
	deep := func(n int) json.RawMessage {
		return json.RawMessage(strings.Repeat(`{"a":`, n-1) + "[]" + strings.Repeat("}", n-1))
	}
	r, _ := newRecorder(t, sqliteBackend)
	if _, err := r.Append(t.Context(), Event{Type: TypeCallDecided, CallID: "c1", Data: deep(maxDataDepth)}); err != nil {
		t.Fatalf("data %d levels deep: %v", maxDataDepth, err)
	}
	if _, err := r.Append(t.Context(), Event{Type: TypeCallDecided, CallID: "c2", Data: deep(maxDataDepth + 1)}); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("data %d levels deep: %v, want ErrInvalidEvent", maxDataDepth+1, err)
	}
	var out bytes.Buffer
	if err := r.Export(t.Context(), &out, Filter{}); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyJSONL(&out)
	if err != nil || !rep.OK || rep.Count != 1 {
		t.Fatalf("VerifyJSONL of the export = %+v, %v; want one event, verified", rep, err)
	}
}
