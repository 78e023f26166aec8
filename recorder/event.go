package recorder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Event types the broker records, one per step of a call. Other types may
// be appended; these are the ones the docs and the web UI know.
const (
	TypeCallReceived      = "call.received"      // an authenticated MCP tool call arrived
	TypeCallDecided       = "call.decided"       // policy decision, with the rules that matched
	TypeApprovalRequested = "approval.requested" // the call is held for a human
	TypeApprovalDecided   = "approval.decided"   // who approved or rejected, and when
	TypeLeaseMinted       = "lease.minted"       // a credential was minted (id, grant, expiry, never the secret)
	TypeLeaseReused       = "lease.reused"       // a live lease for the same identity/resource/grant was reused
	TypeLeaseRevoked      = "lease.revoked"
	TypeLeaseFailed       = "lease.failed"  // minting or revoking failed
	TypeCallExecuted      = "call.executed" // the backend ran: duration, rows/bytes, masked result (capped)
	TypeCallFailed        = "call.failed"   // the backend or a stage failed
	TypeCallCompleted     = "call.completed"
	TypeCallInterrupted   = "call.interrupted" // the replica running the call stopped before it ended (a crash)
)

// GenesisHash is the prev_hash of the first event. The version suffix names
// the hashing scheme; a new scheme gets a new genesis.
const GenesisHash = "airlock-transcript-v1"

// Event is one entry of the transcript. Seq, PrevHash and Hash are assigned
// by Append; Time is assigned by Append when zero.
type Event struct {
	Seq       int64           `json:"seq"`
	Time      time.Time       `json:"time"`
	Type      string          `json:"type"`
	CallID    string          `json:"call_id,omitempty"`
	SessionID string          `json:"session_id,omitempty"`
	Subject   string          `json:"subject,omitempty"`
	Issuer    string          `json:"issuer,omitempty"`
	TokenID   string          `json:"token_id,omitempty"`
	Tool      string          `json:"tool,omitempty"`
	Resource  string          `json:"resource,omitempty"`
	Effect    string          `json:"effect,omitempty"` // decision effect when known, for filtering
	Data      json.RawMessage `json:"data,omitempty"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// computeHash returns hex(sha256(prev_hash "\n" canonical)), where canonical
// is the JSON object appendHashed writes, with `,"data":<Data>` spliced in
// before the closing brace when Data is not empty. Data is taken byte for
// byte, so any change to the stored bytes, even whitespace, changes the
// hash.
func computeHash(ev Event) string {
	var buf [1024]byte // most events fit: no allocation
	b := append(buf[:0], ev.PrevHash...)
	b = append(b, '\n')
	b = appendHashed(b, ev)
	if len(ev.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, ev.Data...)
	}
	b = append(b, '}')
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// appendHashed appends the part of ev the hash covers as a JSON object
// without its closing brace: every member present, in a fixed order, so
// the form is unambiguous. The bytes are those encoding/json gives for
// the same fields with HTML escaping off, as airlock wrote them before
// (TestHashedAsEncodingJSON), without its reflection, which was 7% of an
// append's instructions (callgrind, BenchmarkAppend).
func appendHashed(b []byte, ev Event) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, ev.Seq, 10)
	b = append(b, `,"time":"`...)
	b = ev.Time.UTC().AppendFormat(b, time.RFC3339Nano) // digits, '-', ':', '.', 'T', 'Z': nothing to escape
	b = append(b, '"')
	for _, f := range [...]struct{ name, value string }{
		{`,"type":`, ev.Type},
		{`,"call_id":`, ev.CallID},
		{`,"session_id":`, ev.SessionID},
		{`,"subject":`, ev.Subject},
		{`,"issuer":`, ev.Issuer},
		{`,"token_id":`, ev.TokenID},
		{`,"tool":`, ev.Tool},
		{`,"resource":`, ev.Resource},
		{`,"effect":`, ev.Effect},
		{`,"prev_hash":`, ev.PrevHash},
	} {
		b = append(b, f.name...)
		b = appendJSONString(b, f.value)
	}
	return b
}

// appendJSONString appends s as a JSON string the way encoding/json does
// with HTML escaping off: '"' and '\\' escaped, control characters as
// \b \f \n \r \t or \u00XX, U+2028 and U+2029 escaped, each byte of
// invalid UTF-8 as \ufffd, everything else as it is.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// canonicalJSON returns data re-encoded in a canonical form: compact,
// object members sorted by name (by UTF-16 code units, as RFC 8785 sorts
// them), numbers as written, strings in their shortest escaping but for
// U+2028 and U+2029 (no HTML escaping). That is the form encoding/json
// gave before, byte for byte, but for the order of names that mix
// characters from U+E000 to U+FFFF with ones past U+FFFF (Go sorted map
// keys by UTF-8 bytes); data is hashed as stored, so either verifies.
// Empty data and JSON null give nil. A name repeated in one object is an
// error (which of the two would a reader believe?); invalid UTF-8 in a
// string becomes U+FFFD, as encoding/json has always made it. Data nested
// deeper than maxDataDepth is an error (CapJSON keeps results under it).
//
// jsontext formats the bytes in one pass without building a tree: an
// event's data costs a fifth of the decode-and-re-encode it replaces.
func canonicalJSON(data json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil
	}
	out, err := jsontext.AppendFormat(make([]byte, 0, len(data)), data,
		jsontext.ReorderRawObjects(true), jsontext.EscapeForJS(true), jsontext.AllowInvalidUTF8(true))
	if err != nil {
		return nil, err
	}
	if string(out) == "null" {
		return nil, nil
	}
	if tooDeep(out, maxDataDepth) {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDataDepth)
	}
	return out, nil
}

// marshalCompact encodes v as JSON without HTML escaping or a trailing newline.
func marshalCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// minTime and maxTime bound the times that survive storage as unix nanoseconds.
var (
	minTime = time.Unix(0, -1<<63).UTC()
	maxTime = time.Unix(0, 1<<63-1).UTC()
)

// check rejects what could not be stored and hashed faithfully: an empty
// type, invalid UTF-8 (encoding/json would silently replace it, so two
// different values would hash alike), NUL bytes and out-of-range times.
func (ev Event) check() error {
	if ev.Type == "" {
		return fmt.Errorf("%w: empty type", ErrInvalidEvent)
	}
	for _, f := range []struct{ name, s string }{
		{"type", ev.Type}, {"call_id", ev.CallID}, {"session_id", ev.SessionID}, {"subject", ev.Subject},
		{"issuer", ev.Issuer}, {"token_id", ev.TokenID}, {"tool", ev.Tool}, {"resource", ev.Resource}, {"effect", ev.Effect},
	} {
		if !utf8.ValidString(f.s) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidEvent, f.name)
		}
		if strings.IndexByte(f.s, 0) >= 0 {
			// PostgreSQL's text cannot hold it: refused alike on every store.
			return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalidEvent, f.name)
		}
	}
	if ev.Time.Before(minTime) || ev.Time.After(maxTime) {
		return fmt.Errorf("%w: time %v out of range", ErrInvalidEvent, ev.Time)
	}
	return nil
}

// Check reports whether Append would take ev as it stands, and if not,
// why (an error wrapping ErrInvalidEvent): the checks Append makes before
// it writes, without writing.
func Check(ev Event) error {
	_, err := ready(ev, func() time.Time { return time.Unix(0, 0) })
	return err
}

// ready is ev as Append stores it: data canonical, time stamped (by now
// when zero) in UTC, every field checked.
func ready(ev Event, now func() time.Time) (Event, error) {
	data, err := canonicalJSON(ev.Data)
	if err != nil {
		return Event{}, fmt.Errorf("%w: data: %v", ErrInvalidEvent, err)
	}
	ev.Data = data
	if ev.Time.IsZero() {
		ev.Time = now()
	}
	ev.Time = ev.Time.UTC() // also drops the monotonic reading
	if err := ev.check(); err != nil {
		return Event{}, err
	}
	return ev, nil
}
