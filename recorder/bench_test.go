package recorder

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
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
