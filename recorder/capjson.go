package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// MaxDepth is the deepest nesting of arrays and objects CapJSON returns
// whole. An event's data is refused deeper than maxDataDepth, and a
// backend's answer can reach 10,000 levels by itself (encoding/json's
// limit): a result that deep would be withheld for a reason that is not
// the agent's. Past MaxDepth CapJSON returns the truncated form, whose
// preview is a string.
const MaxDepth = 1000

// maxDataDepth is the deepest nesting an event's data may have: room for
// a result at MaxDepth inside the event's own objects, and far enough
// under the 10,000 levels where encoding/json stops that an exported
// event (its data one level further in) reads back.
const maxDataDepth = 2 * MaxDepth

// capped is what CapJSON records in place of a payload that is too large.
type capped struct {
	Truncated bool   `json:"truncated"`
	Bytes     int    `json:"bytes"`   // size of the full JSON encoding
	Preview   string `json:"preview"` // its first part, cut at a UTF-8 boundary
}

// CapJSON marshals v for a transcript event. If the JSON is longer than
// limit bytes, or nested deeper than MaxDepth, it returns
// {"truncated":true,"bytes":N,"preview":"…"} instead,
// with the preview as long as fits in limit bytes. When limit is too small even
// for an empty preview, the object is returned with an empty preview and
// is longer than limit. A value that cannot be marshalled gives
// {"error":…,"type":…} naming only its Go type, never its content.
func CapJSON(v any, limit int) json.RawMessage {
	b, err := marshalCompact(v)
	if err != nil {
		out, _ := marshalCompact(map[string]string{"error": "value cannot be encoded as JSON", "type": fmt.Sprintf("%T", v)})
		return out
	}
	if len(b) <= limit && !tooDeep(b, MaxDepth) {
		return b
	}
	// The preview is escaped inside the object, so find the longest prefix
	// that fits by binary search over its length in bytes.
	encode := func(n int) json.RawMessage {
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		out, _ := marshalCompact(capped{Truncated: true, Bytes: len(b), Preview: string(b[:n])})
		return out
	}
	lo, hi := 0, min(limit, len(b)-1) // lo always fits, or is 0
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if len(encode(mid)) <= limit {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return encode(lo)
}

// tooDeep reports whether the JSON b (valid: marshalCompact or jsontext
// made it) nests arrays and objects deeper than limit. Fewer opening
// brackets than that cannot, which spares reading the tokens of nearly
// every value.
func tooDeep(b []byte, limit int) bool {
	if bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) <= limit {
		return false
	}
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := dec.ReadToken(); err != nil {
			// io.EOF: read to the end, never too deep. Any other error
			// (jsontext's own depth limit) is treated as too deep.
			return !errors.Is(err, io.EOF)
		}
		if dec.StackDepth() > limit {
			return true
		}
	}
}
