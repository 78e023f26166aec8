// Package webhook is the wire format of airlock's webhooks: the JSON
// payloads (approval.requested, and transcript.checkpoint for the
// checkpoint webhook, with VerifyCheckpoint) and the signature over them.
// It imports only the standard library, so a receiver can use it without
// pulling in airlock.
//
// Every delivery carries three headers:
//
//	Airlock-Timestamp: 1718000000                 (unix seconds, when this attempt was signed)
//	Airlock-Delivery:  6f1c…                      (same on every attempt of one delivery: dedup by it)
//	Airlock-Signature: v2=5257a869e7ecebeda32aff… (hex HMAC-SHA256 over "<timestamp>.<delivery>.<body>")
//
// A receiver recomputes the HMAC with the shared secret over the timestamp
// header, a '.', the delivery header, a '.', and the raw body bytes,
// compares in constant time, rejects timestamps more than Tolerance away
// from its clock, and drops a delivery id it has seen (replays: the id is
// signed, so a captured request cannot be sent again under another).
// Verify does all but the last.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names.
const (
	HeaderTimestamp = "Airlock-Timestamp"
	HeaderSignature = "Airlock-Signature"
	HeaderDelivery  = "Airlock-Delivery"
)

// Tolerance is how far a signed timestamp may be from the receiver's
// clock, in either direction, before Verify rejects it as a replay.
const Tolerance = 5 * time.Minute

// signaturePrefix names the scheme: v2 is HMAC-SHA256 over
// "<timestamp>.<delivery>.<body>", hex encoded. (v1, over
// "<timestamp>.<body>", left the delivery id unsigned.)
const signaturePrefix = "v2="

// Verification errors.
var (
	ErrMissingHeader = errors.New("webhook: missing Airlock-Timestamp, Airlock-Delivery or Airlock-Signature header")
	ErrNoSecret      = errors.New("webhook: no secret to verify with (an empty key verifies anyone's signature)")
	ErrBadTimestamp  = errors.New("webhook: malformed Airlock-Timestamp")
	ErrStale         = errors.New("webhook: timestamp outside the 5 minute tolerance (replayed or clock skew)")
	ErrBadSignature  = errors.New("webhook: signature does not match")
)

// Sign returns the value of the Airlock-Signature header for delivery's
// body signed at ts with secret.
func Sign(secret []byte, ts time.Time, delivery string, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(secret, strconv.FormatInt(ts.Unix(), 10), delivery, body))
}

// SetHeaders signs body at ts, for the delivery h's Airlock-Delivery names,
// and sets the timestamp and signature headers.
func SetHeaders(h http.Header, secret []byte, ts time.Time, body []byte) {
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(secret, ts, h.Get(HeaderDelivery), body))
}

// Verify checks that body was signed with secret less than Tolerance
// before (or after) now. The signature header may hold several
// comma-separated v2= values (for secret rotation); one must match.
func Verify(secret []byte, header http.Header, body []byte, now time.Time) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	tsText, sigText, delivery := header.Get(HeaderTimestamp), header.Get(HeaderSignature), header.Get(HeaderDelivery)
	if tsText == "" || sigText == "" || delivery == "" {
		return ErrMissingHeader
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > Tolerance || d < -Tolerance {
		return fmt.Errorf("%w: signed at %s, now %s", ErrStale, ts.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	want := mac(secret, tsText, delivery, body)
	for _, part := range strings.Split(sigText, ",") {
		hexSig, ok := strings.CutPrefix(strings.TrimSpace(part), signaturePrefix)
		if !ok {
			continue
		}
		got, err := hex.DecodeString(hexSig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrBadSignature
}

func mac(secret []byte, ts, delivery string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write([]byte(delivery))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}
