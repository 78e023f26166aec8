// Package recorder keeps airlock's transcript: an append-only,
// hash-chained log of every step of every call (received, decided,
// approval, lease, execution, result, errors).
//
// Each event's hash covers its predecessor's hash and all of its own
// fields, so the events form a chain:
//
//	GenesisHash ◀── event 1 ◀── event 2 ◀── … ◀── event N  (head)
//	                prev_hash   prev_hash          hash = Head()
//
//	hash = hex(sha256(prev_hash "\n" canonical-json(event without hash)))
//
// Append assigns seq, time, prev_hash and hash in one transaction,
// serialised so the chain stays linear, and fails closed: the broker does
// not run a step it could not record. Verify walks the chain and names the
// first break — an event changed, removed or inserted.
//
// The chain alone cannot show that events were cut off the end, or that
// someone with write access rewrote the tail and recomputed every later
// hash. Publishing the head (Head) somewhere else — a log line, a SIEM —
// anchors everything up to it; VerifyAnchor checks an anchor later.
//
// Export writes JSON lines for a SIEM; VerifyJSONL verifies a complete
// export without the database. CapJSON bounds the size of result payloads.
// See docs/transcripts.md.
package recorder
