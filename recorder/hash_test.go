package recorder

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// hashedFields is how the hashed part of an event was encoded before
// appendHashed: encoding/json, HTML escaping off. Transcripts written then
// must verify now, so appendHashed must give these bytes.
type hashedFields struct {
	Seq       int64  `json:"seq"`
	Time      string `json:"time"`
	Type      string `json:"type"`
	CallID    string `json:"call_id"`
	SessionID string `json:"session_id"`
	Subject   string `json:"subject"`
	Issuer    string `json:"issuer"`
	TokenID   string `json:"token_id"`
	Tool      string `json:"tool"`
	Resource  string `json:"resource"`
	Effect    string `json:"effect"`
	PrevHash  string `json:"prev_hash"`
}

func encodingJSONHashed(t testing.TB, ev Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(hashedFields{
		Seq: ev.Seq, Time: ev.Time.UTC().Format(time.RFC3339Nano), Type: ev.Type, CallID: ev.CallID,
		SessionID: ev.SessionID, Subject: ev.Subject, Issuer: ev.Issuer, TokenID: ev.TokenID,
		Tool: ev.Tool, Resource: ev.Resource, Effect: ev.Effect, PrevHash: ev.PrevHash,
	}); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("}\n"))
}

// hashTestStrings are the strings whose encoding differs between JSON
// encoders: escapes, controls, HTML characters, the JavaScript line
// separators, invalid UTF-8, replacement characters, astral runes.
var hashTestStrings = []string{
	"", "alice", `a"b`, `a\b`, "\x00\x01\x1f\x7f", "\b\f\n\r\t", "<script>&amp;</script>",
	"\u2028\u2029", "x\u2028y\u2029z", "\u2027\u202a", "\xff", "a\xc3", "\xe2\x80", "\xed\xa0\x80",
	"\ufffd", "é日本語🔑", "\U0010ffff", "/slash/", "'single'", strings.Repeat("é\n", 300),
}

// TestHashedAsEncodingJSON: appendHashed writes, for every event, the
// bytes encoding/json wrote (hashedFields), so every transcript written by
// an earlier airlock verifies, and computeHash of a stored event is what
// it was.
func TestHashedAsEncodingJSON(t *testing.T) {
	times := []time.Time{
		{}, time.Unix(0, 0), time.Unix(1, 1), time.Unix(1700000000, 120000000),
		time.Date(2026, 12, 2, 15, 4, 5, 999999999, time.FixedZone("x", -7*3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), time.Unix(0, math.MaxInt64), time.Unix(0, math.MinInt64),
	}
	check := func(ev Event) {
		t.Helper()
		want := encodingJSONHashed(t, ev)
		if got := appendHashed(nil, ev); !bytes.Equal(got, want) {
			t.Fatalf("appendHashed(%+v)\n got %q\nwant %q", ev, got, want)
		}
	}
	for _, s := range hashTestStrings {
		for _, tm := range times {
			check(Event{Seq: 7, Time: tm, Type: s, CallID: s, SessionID: s, Subject: s, Issuer: s,
				TokenID: s, Tool: s, Resource: s, Effect: s, PrevHash: s})
		}
	}
	for _, seq := range []int64{0, 1, -1, math.MaxInt64, math.MinInt64} {
		check(Event{Seq: seq, Time: times[3], Type: TypeCallReceived})
	}
	// Random strings from an alphabet of what encoders disagree on.
	alphabet := []string{"a", "Z", "0", `"`, `\`, "/", "<", ">", "&", "\x00", "\x1f", "\x7f", "\n", "\t",
		"\u2028", "\u2029", "\u00e9", "\ufffd", "\U0001f511", "\xff", "\xc3", "\xe2\x80", "\xed\xa0\x80"}
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 5000 {
		check(Event{Seq: rng.Int64(), Time: time.Unix(0, rng.Int64()), Type: str(), CallID: str(), SessionID: str(),
			Subject: str(), Issuer: str(), TokenID: str(), Tool: str(), Resource: str(), Effect: str(), PrevHash: str()})
	}
}

// FuzzAppendJSONString: appendJSONString writes what encoding/json writes
// for any string, HTML escaping off. `go test -fuzz FuzzAppendJSONString
// ./recorder/` searches beyond the seeds.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range hashTestStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
			t.Fatalf("appendJSONString(%q) = %q, want %q", s, got, want.Bytes())
		}
	})
}

// BenchmarkComputeHash measures hashing a typical call.executed event.
func BenchmarkComputeHash(b *testing.B) {
	ev := Event{Seq: 123456, Time: time.Now(), Type: TypeCallExecuted, CallID: "0193a4f2-7c1e-7b3a-9d2e-4f5a6b7c8d9e",
		SessionID: "stdio", Subject: "alice@example.com", Issuer: "https://id.example.com", TokenID: "tok-1",
		Tool: "query_db", Resource: "orders", PrevHash: strings.Repeat("ab", 32),
		Data: json.RawMessage(`{"duration_ms":12,"rows":3,"result":{"columns":["id","email"],"rows":[[1,"[redacted]"]]}}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = computeHash(ev)
	}
}
