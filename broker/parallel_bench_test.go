package broker_test

import "testing"

// BenchmarkQueryThroughBrokerParallel is BenchmarkQueryThroughBroker from
// 16 goroutines at once (as concurrent sessions of `airlock serve` call
// the broker), on the same SQLite transcript: the appends of concurrent
// calls share transactions (recorder/commit.go). It reports calls/s and
// the events one transaction held on average (recorder.Stats); its
// CPU profile shows what a call costs under load without the HTTP and MCP
// layers and without a load generator on the same cores.
func BenchmarkQueryThroughBrokerParallel(b *testing.B) {
	p := newPipeline(b)
	if r := p.query(b, benchSQL); r.IsError {
		b.Fatal(r.Text)
	}
	b.SetParallelism(8) // × GOMAXPROCS (2 here)
	before := p.rec.Stats()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := p.query(b, benchSQL); r.IsError {
				b.Error(r.Text)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	after := p.rec.Stats()
	b.ReportMetric(float64(after.Events-before.Events)/float64(after.Commits-before.Commits), "events/commit")
}
