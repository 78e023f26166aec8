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
// Append assigns seq, time, prev_hash and hash in a transaction,
// serialised so the chain stays linear, and fails closed: the broker does
// not run a step it could not record. Appends made at the same time share
// one transaction (group commit, commit.go): each still gets its own seq
// and hash, and returns only once that transaction is committed. Verify
// walks the chain and names the first break — an event changed, removed or
// inserted.
//
// The store is SQLite or PostgreSQL (the dialect follows the *sql.DB's
// driver). With PostgreSQL several processes (replicas) append to one
// chain: each append holds a transaction-scoped advisory lock around
// read-head-and-insert. One chain rather than per-replica chains merged
// later, because it keeps Verify, Export, VerifyJSONL and checkpoints
// exactly as they are for one process, and orders events across replicas
// by commit; the cost is that appends are serialised across replicas (see
// docs/operations.md, "Several writers, one chain").
//
//	replica A ─┐  BEGIN; pg_advisory_xact_lock; read head; INSERT seq+1 [, seq+2 …]; COMMIT
//	replica B ─┼─▶ one transcript_events chain (seq is the primary key)
//	replica C ─┘
//
// The chain alone cannot show that events were cut off the end, or that
// someone with write access rewrote the tail and recomputed every later
// hash. A Checkpoint records the head in the store, signed (HMAC-SHA256)
// with the checkpoint key, and a Checkpointer writes one at an interval
// and logs it; Verify checks the chain against the latest checkpoint and
// reports how far back its proof reaches. Publishing the head (Head, or the
// checkpoint log lines) somewhere else — a SIEM — anchors everything up to
// it; VerifyAnchor checks an anchor later.
//
// Export writes JSON lines for a SIEM; VerifyJSONL verifies a complete
// export without the database. CapJSON bounds the size of result payloads.
// See docs/transcripts.md.
package recorder
