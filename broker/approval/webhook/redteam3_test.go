package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Red team 3 of the receiver-side helpers: Verify and VerifyCheckpoint are
// what a receiver trusts, so they must fail closed on every input an
// attacker or a misconfigured receiver can give them.

// TestRedTeam3VerifyRefusesEmptySecret: a receiver whose secret variable
// is unset calls Verify with an empty secret. Anyone can compute
// HMAC-SHA256 under the empty key, so Verify must refuse rather than
// accept a forged delivery. (airlock itself refuses secrets under 16
// bytes; the helper does not.)
func TestRedTeam3VerifyRefusesEmptySecret(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	body := []byte(`{"type":"approval.requested","approval":{"id":"forged"}}`)
	for _, secret := range [][]byte{nil, {}} {
		h := http.Header{}
		h.Set(HeaderDelivery, "forged")
		SetHeaders(h, secret, now, body) // what a forger computes
		if err := Verify(secret, h, body, now); err == nil {
			t.Errorf("Verify(secret of %d bytes) accepted a delivery anyone could have signed", len(secret))
		}
	}
}

// TestRedTeam3VerifyCheckpointRefusesEmptyKey: the same for checkpoints: a
// receiver with no checkpoint key must not accept a checkpoint "signed"
// under the empty key (its key_id is public: CheckpointKeyID(nil)).
func TestRedTeam3VerifyCheckpointRefusesEmptyKey(t *testing.T) {
	c := PayloadCheckpoint{ID: 1, Time: time.Unix(1_750_000_000, 0).UTC(), HeadSeq: 1, HeadHash: "00", KeyID: CheckpointKeyID(nil)}
	m := hmac.New(sha256.New, nil)
	m.Write(CheckpointSignedText(c))
	c.Signature = hex.EncodeToString(m.Sum(nil))
	if err := VerifyCheckpoint(nil, c); err == nil {
		t.Error("VerifyCheckpoint(empty key) accepted a checkpoint anyone could have signed")
	}
}

// TestRedTeam3VerifySignatureForms: truncated, padded, empty and
// mis-prefixed signatures, and timestamps past the tolerance either way,
// are refused; a rotation list with one good value is accepted.
func TestRedTeam3VerifySignatureForms(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_750_000_000, 0)
	body := []byte(`{"type":"approval.requested"}`)
	good := Sign(secret, now, "d-1", body)
	hexSig := strings.TrimPrefix(good, "v2=")
	ts := strconv.FormatInt(now.Unix(), 10)
	tests := []struct {
		name, ts, sig string
		want          error
	}{
		{"good", ts, good, nil},
		{"rotation list, good one last", ts, "v2=" + strings.Repeat("0", 64) + ", " + good, nil},
		{"truncated to 16 bytes", ts, "v2=" + hexSig[:32], ErrBadSignature},
		{"truncated by one digit", ts, "v2=" + hexSig[:63], ErrBadSignature},
		{"empty v2", ts, "v2=", ErrBadSignature},
		{"the old v1 scheme", ts, "v1=" + hexSig, ErrBadSignature},
		{"another delivery's signature", ts, Sign(secret, now, "d-2", body), ErrBadSignature},
		{"padded", ts, good + "00", ErrBadSignature},
		{"other scheme prefix", ts, "v0=" + hexSig, ErrBadSignature},
		{"no prefix", ts, hexSig, ErrBadSignature},
		{"timestamp changed, same signature", strconv.FormatInt(now.Unix()+1, 10), good, ErrBadSignature},
		{"same instant, other spelling", "0" + ts, good, ErrBadSignature},
		{"stale", strconv.FormatInt(now.Add(-Tolerance-time.Second).Unix(), 10), Sign(secret, now.Add(-Tolerance-time.Second), "d-1", body), ErrStale},
		{"future", strconv.FormatInt(now.Add(Tolerance+time.Second).Unix(), 10), Sign(secret, now.Add(Tolerance+time.Second), "d-1", body), ErrStale},
		{"timestamp not a number", "1e9", good, ErrBadTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			h.Set(HeaderTimestamp, tt.ts)
			h.Set(HeaderDelivery, "d-1")
			h.Set(HeaderSignature, tt.sig)
			err := Verify(secret, h, body, now)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestRedTeam3VerifyCheckpointForms: signatures cut short or padded, upper
// case hex of a wrong MAC, a valid signature presented under another key's
// id, and another key's valid signature under this key's id are refused.
func TestRedTeam3VerifyCheckpointForms(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("fedcba9876543210fedcba9876543210")
	sign := func(k []byte, c PayloadCheckpoint) string {
		m := hmac.New(sha256.New, k)
		m.Write(CheckpointSignedText(c))
		return hex.EncodeToString(m.Sum(nil))
	}
	c := PayloadCheckpoint{ID: 3, Time: time.Date(2026, 12, 1, 17, 0, 0, 5, time.UTC), HeadSeq: 99, HeadHash: "ab12", KeyID: CheckpointKeyID(key)}
	c.Signature = sign(key, c)
	tests := []struct {
		name string
		edit func(*PayloadCheckpoint)
		want error
	}{
		{"truncated to 16 bytes", func(p *PayloadCheckpoint) { p.Signature = p.Signature[:32] }, ErrCheckpointSignature},
		{"truncated to nothing but one byte", func(p *PayloadCheckpoint) { p.Signature = p.Signature[:2] }, ErrCheckpointSignature},
		{"odd length", func(p *PayloadCheckpoint) { p.Signature = p.Signature[:63] }, ErrCheckpointSignature},
		{"padded", func(p *PayloadCheckpoint) { p.Signature += "00" }, ErrCheckpointSignature},
		{"another key's id", func(p *PayloadCheckpoint) { p.KeyID = CheckpointKeyID(other) }, ErrCheckpointKey},
		{"another key's signature under this id", func(p *PayloadCheckpoint) { p.Signature = sign(other, *p) }, ErrCheckpointSignature},
		{"key id empty", func(p *PayloadCheckpoint) { p.KeyID = "" }, ErrCheckpointKey},
		{"hash with the time moved into it", func(p *PayloadCheckpoint) {
			p.HeadHash += "\n" + p.Time.UTC().Format(time.RFC3339Nano)
		}, ErrCheckpointSignature},
	}
	if err := VerifyCheckpoint(key, c); err != nil {
		t.Fatalf("the valid checkpoint: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := c
			tt.edit(&p)
			if err := VerifyCheckpoint(key, p); !errors.Is(err, tt.want) {
				t.Errorf("VerifyCheckpoint = %v, want %v", err, tt.want)
			}
		})
	}
}
