package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// EventTranscriptCheckpoint is the payload type of the checkpoint webhook.
const EventTranscriptCheckpoint = "transcript.checkpoint"

// CheckpointPayload is the JSON body the checkpoint webhook receives: a
// signed statement that airlock's transcript reached HeadSeq events, the
// last one hashing to HeadHash. Keep these somewhere airlock cannot write:
// `airlock transcripts verify` then shows whether the transcript still
// reaches them.
type CheckpointPayload struct {
	Type       string            `json:"type"` // "transcript.checkpoint"
	Checkpoint PayloadCheckpoint `json:"checkpoint"`
}

// PayloadCheckpoint is one checkpoint of the transcript's chain head.
type PayloadCheckpoint struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	HeadSeq  int64     `json:"head_seq"`
	HeadHash string    `json:"head_hash"`
	// KeyID names the checkpoint key (a hash of it, never the key).
	KeyID string `json:"key_id"`
	// Signature is hex HMAC-SHA256, under the checkpoint key, of
	// CheckpointSignedText.
	Signature string `json:"signature"`
}

// Checkpoint verification errors.
var (
	ErrCheckpointUnsigned  = errors.New("webhook: checkpoint is not signed")
	ErrCheckpointKey       = errors.New("webhook: checkpoint is signed with another key (key_id differs)")
	ErrCheckpointSignature = errors.New("webhook: checkpoint signature does not match")
)

// CheckpointSignedText is what a checkpoint's signature covers:
//
//	airlock-checkpoint-v1\n<head_seq>\n<head_hash>\n<time, UTC, RFC 3339 with nanoseconds>
func CheckpointSignedText(c PayloadCheckpoint) []byte {
	return []byte("airlock-checkpoint-v1\n" + strconv.FormatInt(c.HeadSeq, 10) + "\n" + c.HeadHash + "\n" +
		c.Time.UTC().Format(time.RFC3339Nano))
}

// CheckpointKeyID is the public name of a checkpoint key, as in key_id.
func CheckpointKeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("airlock-checkpoint-key-id\n"), key...))
	return hex.EncodeToString(sum[:8])
}

// VerifyCheckpoint checks that c is signed with key (the checkpoint key,
// transcripts.checkpoint_key_*; not the webhook's secret, which Verify
// checks over the whole body).
func VerifyCheckpoint(key []byte, c PayloadCheckpoint) error {
	if len(key) == 0 {
		return ErrNoSecret
	}
	if c.Signature == "" {
		return ErrCheckpointUnsigned
	}
	if c.KeyID != CheckpointKeyID(key) {
		return ErrCheckpointKey
	}
	got, err := hex.DecodeString(c.Signature)
	if err != nil {
		return ErrCheckpointSignature
	}
	m := hmac.New(sha256.New, key)
	m.Write(CheckpointSignedText(c))
	if !hmac.Equal(got, m.Sum(nil)) {
		return ErrCheckpointSignature
	}
	return nil
}
