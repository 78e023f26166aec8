package recorder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// rt6OldComputeHash is computeHash as it was before appendHashed:
// encoding/json of hashedFields (HTML escaping off), data spliced in.
func rt6OldComputeHash(t testing.TB, ev Event) string {
	b := append([]byte(ev.PrevHash+"\n"), encodingJSONHashed(t, ev)...)
	if len(ev.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, ev.Data...)
	}
	b = append(b, '}')
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestRedTeam6HashRoundTripOddStrings: events whose fields hold controls, U+2028/9, NULs and long runs, with times in odd zones,
// appended to a real SQLite store, read back and verified: the hash the
// recorder stored is the one the old encoding/json code gives for the
// event as read back, and Verify passes.
func TestRedTeam6HashRoundTripOddStrings(t *testing.T) {
	r, _ := newRecorder(t, sqliteBackend)
	ctx := context.Background()
	// What Append takes: valid UTF-8 without NUL (check refuses the rest).
	alphabet := []string{"a", `"`, `\`, "<", "&", "\x01", "\x1f", "\x7f", "\n", "\r", "\t", "\b", "\f",
		"\u2028", "\u2029", "\u00e9", "\ufffd", "\U0001f511", "\U0010ffff", "\u0080", "\u07ff", "\ufeff"}
	rng := rand.New(rand.NewPCG(6, 66))
	str := func() string {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for i := range 300 {
		ev := Event{Type: TypeCallReceived, CallID: str(), SessionID: str(), Subject: str(), Issuer: str(),
			TokenID: str(), Tool: str(), Resource: str()}
		got, err := r.Append(ctx, ev)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := rt6OldComputeHash(t, got); got.Hash != want {
			t.Fatalf("event %d: hash %s, the old encoding/json code gives %s for %+v", i, got.Hash, want, got)
		}
	}
	evs, err := r.Events(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if want := rt6OldComputeHash(t, ev); ev.Hash != want {
			t.Fatalf("stored seq %d: hash %s, old code gives %s", ev.Seq, ev.Hash, want)
		}
	}
	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK || rep.Count != int64(len(evs)) {
		t.Fatalf("Verify = %+v, %v; want OK with %d", rep, err, len(evs))
	}
	t.Logf("%d odd events stored and verified", len(evs))
	// Times the old code formatted: far years, negative years, zones.
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(-5, 3, 1, 0, 0, 0, 0, time.FixedZone("", 3600)),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("odd", -(12*3600+59*60+59))), time.Now()} {
		ev := Event{Seq: 3, Time: tm, Type: "t", PrevHash: GenesisHash}
		if got, want := computeHash(ev), rt6OldComputeHash(t, ev); got != want {
			t.Errorf("time %v: %s, old %s", tm, got, want)
		}
		if !bytes.Equal(appendHashed(nil, ev), encodingJSONHashed(t, ev)) {
			t.Errorf("time %v differs", tm)
		}
	}
}
