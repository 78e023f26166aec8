package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

func TestVerifyCheckpoint(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	at := time.Date(2026, 12, 1, 17, 0, 0, 123456789, time.UTC)
	c := PayloadCheckpoint{ID: 7, Time: at, HeadSeq: 4180, HeadHash: "9f2c", KeyID: CheckpointKeyID(key)}
	// The signed text as docs/transcripts.md writes it.
	if got, want := string(CheckpointSignedText(c)), "airlock-checkpoint-v1\n4180\n9f2c\n2026-12-01T17:00:00.123456789Z"; got != want {
		t.Fatalf("signed text = %q, want %q", got, want)
	}
	m := hmac.New(sha256.New, key)
	m.Write(CheckpointSignedText(c))
	c.Signature = hex.EncodeToString(m.Sum(nil))

	other := c
	other.Time = at.In(time.FixedZone("CET", 3600)) // the same instant in another zone
	tests := []struct {
		name string
		key  []byte
		edit func(*PayloadCheckpoint)
		want error
	}{
		{"valid", key, nil, nil},
		{"same instant, other zone", key, func(p *PayloadCheckpoint) { *p = other }, nil},
		{"head cut back", key, func(p *PayloadCheckpoint) { p.HeadSeq-- }, ErrCheckpointSignature},
		{"other hash", key, func(p *PayloadCheckpoint) { p.HeadHash = "9f2d" }, ErrCheckpointSignature},
		{"other time", key, func(p *PayloadCheckpoint) { p.Time = p.Time.Add(time.Nanosecond) }, ErrCheckpointSignature},
		{"signature not hex", key, func(p *PayloadCheckpoint) { p.Signature = "zz" }, ErrCheckpointSignature},
		{"unsigned", key, func(p *PayloadCheckpoint) { p.Signature = "" }, ErrCheckpointUnsigned},
		{"another key", []byte("fedcba9876543210fedcba9876543210"), nil, ErrCheckpointKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := c
			if tt.edit != nil {
				tt.edit(&p)
			}
			if err := VerifyCheckpoint(tt.key, p); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("VerifyCheckpoint = %v, want %v", err, tt.want)
			}
		})
	}
}
