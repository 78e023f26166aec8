// Command benchtable prints the table of issue 14's figures from the output
// of `make bench` and `make bench-load` (go test -bench), so that each run
// shows where airlock stands against its targets. Files that do not exist
// are skipped; a figure whose benchmark did not run says so.
//
//	go run ./internal/benchtable bin/bench.txt bin/bench-load.txt
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// metrics maps benchmark name (without the -GOMAXPROCS suffix) to unit to
// value, from lines like "BenchmarkX-2  100  1234 ns/op  5.6 airlock/peer-1row".
type metrics map[string]map[string]float64

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

func read(paths []string) (metrics, error) {
	m := metrics{}
	for _, path := range paths {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			g := benchLine.FindStringSubmatch(sc.Text())
			if g == nil {
				continue
			}
			fields := strings.Fields(g[3])
			for i := 0; i+1 < len(fields); i += 2 {
				v, err := strconv.ParseFloat(fields[i], 64)
				if err != nil {
					break
				}
				if m[g[1]] == nil {
					m[g[1]] = map[string]float64{}
				}
				m[g[1]][fields[i+1]] = v
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m metrics) get(bench, unit string) (float64, bool) {
	v, ok := m[bench][unit]
	return v, ok
}

const missing = "not measured in this run"

func main() {
	m, err := read(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	ratio := func(bench, u1, u10 string) string {
		a, ok1 := m.get(bench, u1)
		b, ok10 := m.get(bench, u10)
		if !ok1 || !ok10 {
			return missing
		}
		return fmt.Sprintf("%.2f× (1 row), %.2f× (10 rows)", a, b)
	}
	// above is what airlock takes over the floor server (airlock's stack
	// with none of its controls) in the same run.
	above := func(bench string) string {
		a, ok1 := m.get(bench, "airlock-floor-1row-µs")
		b, ok10 := m.get(bench, "airlock-floor-10rows-µs")
		if !ok1 || !ok10 {
			return missing
		}
		return fmt.Sprintf("+%.0f µs (1 row), +%.0f µs (10 rows)", a, b)
	}
	const floorNote = "(not a target: the floor of the row above)"
	rows := [][3]string{
		{"end-to-end `query_db` p50 vs the faster of dbhub / server-postgres, TS SDK over stdio", ratio("BenchmarkQueryDBVsPeers", "airlock/peer-1row", "airlock/peer-10rows"), "≤ 0.6×"},
		{"*the floor — airlock's stack (mcp-go, pgx) with none of its controls — vs the same peer*", ratio("BenchmarkQueryDBVsPeers", "floor/peer-1row", "floor/peer-10rows"), floorNote},
		{"*airlock's p50 above the floor: what the controls cost end to end*", above("BenchmarkQueryDBVsPeers"), "(not a target)"},
		{"same over streamable HTTP (vs dbhub; server-postgres has no HTTP)", ratio("BenchmarkQueryDBVsPeersHTTP", "airlock/dbhub-1row", "airlock/dbhub-10rows"), "≤ 0.6×"},
		{"*the floor over HTTP vs dbhub*", ratio("BenchmarkQueryDBVsPeersHTTP", "floor/dbhub-1row", "floor/dbhub-10rows"), floorNote},
		{"*airlock's p50 above the floor over HTTP*", above("BenchmarkQueryDBVsPeersHTTP"), "(not a target)"},
	}
	overhead := missing
	if via, ok := m.get("BenchmarkQueryThroughBroker", "ns/op"); ok {
		if direct, ok := m.get("BenchmarkQueryDirect", "ns/op"); ok {
			overhead = fmt.Sprintf("+%.0f µs (%.0f vs %.0f µs, %.1f×)", (via-direct)/1000, via/1000, direct/1000, via/direct)
		}
	}
	rows = append(rows, [3]string{"broker overhead over a bare pgx query on an open connection (warm lease, policy + mask + record)", overhead, "≤ +150 µs"})
	if full, ok := m.get("BenchmarkQueryThroughBrokerSyncFull", "ns/op"); ok {
		if direct, ok := m.get("BenchmarkQueryDirect", "ns/op"); ok {
			rows = append(rows, [3]string{"*the same with the store's SQLite at synchronous=full (a sync per commit)*", fmt.Sprintf("+%.0f µs (%.0f vs %.0f µs)", (full-direct)/1000, full/1000, direct/1000), "(not a target)"})
		}
	}
	load := missing
	if r, ok := m.get("BenchmarkLoadVsDBHub", "airlock/dbhub-calls/s"); ok {
		a, _ := m.get("BenchmarkLoadVsDBHub", "airlock-calls/s")
		d, _ := m.get("BenchmarkLoadVsDBHub", "dbhub-calls/s")
		load = fmt.Sprintf("%.2f× (%.0f vs %.0f calls/s)", r, a, d)
	}
	rows = append(rows, [3]string{"calls/s, 50 sessions over HTTP, recording on, vs dbhub under the same load generator (Go, mcp-go clients)", load, "≥ 3×"})
	if r, ok := m.get("BenchmarkLoadVsDBHub", "floor/dbhub-calls/s"); ok {
		f, _ := m.get("BenchmarkLoadVsDBHub", "floor-calls/s")
		a, _ := m.get("BenchmarkLoadVsDBHub", "airlock/floor-calls/s")
		rows = append(rows, [3]string{"*the floor under that load vs dbhub (airlock's share of the floor's rate)*", fmt.Sprintf("%.2f× (%.0f calls/s; airlock %.2f× of it)", r, f, a), floorNote})
	}
	if r, ok := m.get("BenchmarkLoadVsDBHubTS", "airlock/dbhub-calls/s"); ok {
		a, _ := m.get("BenchmarkLoadVsDBHubTS", "airlock-calls/s")
		d, _ := m.get("BenchmarkLoadVsDBHubTS", "dbhub-calls/s")
		rows = append(rows, [3]string{"*the same with the TypeScript SDK as the generator (one Node process, which bounds both)*", fmt.Sprintf("%.2f× (%.0f vs %.0f calls/s)", r, a, d), "(not a target)"})
	}
	policy := missing
	if v, ok := m.get("BenchmarkEvaluate200Rules", "ns/op"); ok {
		policy = fmt.Sprintf("%.1f µs", v/1000)
		if c, ok := m.get("BenchmarkEvaluate200Rules", "cpu-ns/op"); ok {
			policy += fmt.Sprintf(" (%.1f µs of CPU)", c/1000)
		}
	}
	rows = append(rows, [3]string{"policy evaluation, 200 realistic rules", policy, "≤ 5 µs"})
	facts := missing
	if v, ok := m.get("BenchmarkSQLFacts/repeated", "ns/op"); ok {
		facts = fmt.Sprintf("%.1f µs", v/1000)
		if u, ok := m.get("BenchmarkSQLFacts/uncached", "ns/op"); ok {
			facts += fmt.Sprintf(" (parsing it: %.0f µs)", u/1000)
		}
	}
	rows = append(rows, [3]string{"SQL facts for a repeated statement", facts, "≤ 5 µs"})
	p99 := missing
	if a, ok := m.get("BenchmarkLoadVsDBHub", "airlock-p99-ms"); ok {
		b, _ := m.get("BenchmarkLoadVsDBHub", "airlock-p50-ms")
		p99 = fmt.Sprintf("%.1f ms (%.1f× p50)", a, a/b)
	}
	rows = append(rows, [3]string{"p99 end to end under that load", p99, "reported, and ≤ 5× p50"})
	// The store's share (not a target of its own): transcript appends from
	// 32 goroutines, group commit against one transaction per event, for
	// each durability setting (recorder BenchmarkGroupCommit).
	var store []string
	for _, b := range []struct{ name, label string }{
		{"sqlite", "SQLite synchronous=NORMAL"}, {"sqlite-full", "SQLite synchronous=FULL"}, {"postgres", "PostgreSQL"},
	} {
		name := "BenchmarkGroupCommit/" + b.name + "/goroutines=32/"
		batch, ok1 := m.get(name+"batch", "events/s")
		one, ok2 := m.get(name+"one", "events/s")
		per, _ := m.get(name+"batch", "events/commit")
		if ok1 && ok2 {
			store = append(store, fmt.Sprintf("%s %.0f vs %.0f events/s (%.1f×, %.1f events per commit)", b.label, batch, one, batch/one, per))
		}
	}
	appends := missing
	if len(store) > 0 {
		appends = strings.Join(store, "; ")
	}
	rows = append(rows, [3]string{"transcript appends from 32 concurrent calls: group commit vs one transaction per event", appends, "(the store's share of the load row)"})

	fmt.Println()
	fmt.Println("| figure | this run | target |")
	fmt.Println("|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("\nload average at the end of the run: %s\n", strings.Join(strings.Fields(string(la))[:3], " "))
	}
}
