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
