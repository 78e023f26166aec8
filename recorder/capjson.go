package recorder

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// capped is what CapJSON records in place of a payload that is too large.
type capped struct {
	Truncated bool   `json:"truncated"`
	Bytes     int    `json:"bytes"`   // size of the full JSON encoding
	Preview   string `json:"preview"` // its first part, cut at a UTF-8 boundary
}

// CapJSON marshals v for a transcript event. If the JSON is longer than
// limit bytes it returns {"truncated":true,"bytes":N,"preview":"…"} instead,
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
	if len(b) <= limit {
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
