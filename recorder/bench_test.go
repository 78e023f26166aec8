package recorder

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
)

// BenchmarkAppend measures durable appends to a temp-file SQLite database
// in WAL mode (synchronous=NORMAL), each event with a small JSON payload.
func BenchmarkAppend(b *testing.B) {
	r, _ := newRecorder(b, sqliteBackend)
	ctx := context.Background()
	ev := Event{Type: TypeCallExecuted, CallID: "c1", Subject: "alice", Tool: "query_db", Resource: "orders",
		Data: json.RawMessage(`{"duration_ms":12,"rows":3,"result":{"columns":["id","email"],"rows":[[1,"[redacted]"]]}}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendParallel measures appends from many goroutines (they
// serialise on the chain).
func BenchmarkAppendParallel(b *testing.B) {
	r, _ := newRecorder(b, sqliteBackend)
	ev := Event{Type: TypeCallReceived, CallID: "c1", Subject: "alice"}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Append(context.Background(), ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkGroupCommit measures appends from many goroutines at once, as
// concurrent calls make them, with group commit ("batch") and with one
// transaction per event as before it ("one"), on SQLite in WAL mode with
// synchronous=NORMAL (the log synced at checkpoints only) and FULL (synced
// at every commit), and on PostgreSQL (synchronous_commit as the server
// has it: on by default). It reports events/s and events per transaction.
func BenchmarkGroupCommit(b *testing.B) {
	backends := []backend{sqliteBackend, sqliteFullBackend, postgresBackendB(b)}
	for _, be := range backends {
		for _, goroutines := range []int{1, 8, 32} {
			for _, mode := range []string{"one", "batch"} {
				b.Run(fmt.Sprintf("%s/goroutines=%d/%s", be.name, goroutines, mode), func(b *testing.B) {
					r, _ := newRecorder(b, be)
					if mode == "one" {
						r.batch = 1
					}
					ev := Event{Type: TypeCallDecided, CallID: "c1", Subject: "alice", Tool: "query_db", Resource: "orders",
						Data: json.RawMessage(`{"decision":{"effect":"allow","rule":"team-reads"},"facts":{"tables":["orders"]}}`)}
					commits := r.commits.Load()
					b.SetParallelism((goroutines + 1) / 2) // GOMAXPROCS is 2 here
					if goroutines == 1 {
						for b.Loop() {
							if _, err := r.Append(context.Background(), ev); err != nil {
								b.Fatal(err)
							}
						}
					} else {
						b.RunParallel(func(pb *testing.PB) {
							for pb.Next() {
								if _, err := r.Append(context.Background(), ev); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
					b.ReportMetric(float64(b.N)/float64(r.commits.Load()-commits), "events/commit")
				})
			}
		}
	}
}

// BenchmarkVerify measures chain verification over 10,000 events.
func BenchmarkVerify(b *testing.B) {
	r, _ := newRecorder(b, sqliteBackend)
	ctx := context.Background()
	const n = 10000
	for range n {
		if _, err := r.Append(ctx, Event{Type: TypeCallReceived, CallID: "c1", Data: json.RawMessage(`{"a":1}`)}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		rep, err := r.Verify(ctx)
		if err != nil || !rep.OK {
			b.Fatal(rep, err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendPostgres measures appends to a real PostgreSQL from one
// writer and from four (separate pools, as replicas have), all on one chain
// under the advisory lock.
func BenchmarkAppendPostgres(b *testing.B) {
	pg := postgresBackendB(b)
	for _, writers := range []int{1, 4} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			driver, dsn := pg.dsn(b)
			recs := make([]*Recorder, writers)
			for i := range recs {
				r, err := New(openDSN(b, driver, dsn))
				if err != nil {
					b.Fatal(err)
				}
				recs[i] = r
			}
			ev := Event{Type: TypeCallReceived, CallID: "c1", Subject: "alice"}
			var next atomic.Int64
			b.SetParallelism(writers)
			b.RunParallel(func(pb *testing.PB) {
				r := recs[int(next.Add(1)-1)%writers]
				for pb.Next() {
					if _, err := r.Append(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkCallIDOrder appends a call's five events at a time to a
// SQLite transcript already holding 500,000 events of 100,000 calls, the
// call ids random (UUIDv4) or time-ordered (UUIDv7, as the broker makes
// them): the call_id index grows at random places in it or at its end.
// Compare v7 against v4 in the same run.
func BenchmarkCallIDOrder(b *testing.B) {
	for _, tt := range []struct {
		name   string
		newID  func() string
		oldIDs string // SQL for the earlier calls' ids, from n
	}{
		{"v4", uuid.NewString, "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-8' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"},
		{"v7", func() string { return uuid.Must(uuid.NewV7()).String() }, "printf('%08x-0000-7000-8000-', n) || lower(hex(randomblob(6)))"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			r, db := newRecorder(b, sqliteBackend)
			// The earlier calls sit below seq 0, out of the chain's way.
			if _, err := db.Exec(`WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 100000)
				INSERT INTO transcript_events (seq, time, type, call_id, subject, data, prev_hash, hash)
				SELECT -n*5 - k, n, 'call.received', id, 'alice', '{}', '', ''
				FROM (SELECT n, ` + tt.oldIDs + ` AS id FROM c),
				     (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4)`); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			ev := Event{Type: TypeCallExecuted, Subject: "alice", Tool: "query_db", Resource: "orders",
				Data: json.RawMessage(`{"duration_ms":12,"rows":1}`)}
			for b.Loop() {
				ev.CallID = tt.newID()
				if _, err := r.AppendAll(ctx, []Event{ev, ev, ev}); err != nil {
					b.Fatal(err)
				}
				if _, err := r.AppendAll(ctx, []Event{ev, ev}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
