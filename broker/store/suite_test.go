package store

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
	"github.com/airlock-mcp/airlock/internal/testenv"
)

// suite is the store test suite: every case runs against SQLite (a file
// in WAL mode, as served) and against a real PostgreSQL.
var suite = []struct {
	name string
	run  func(t *testing.T, b backend)
}{
	{"OpenIdempotent", testOpenIdempotent},
	{"OpenNewerSchema", testOpenNewerSchema},
	{"OpenConcurrent", testOpenConcurrent},
	{"LeaseRoundTrip", testLeaseRoundTrip},
	{"InsertLeaseInvalid", testInsertLeaseInvalid},
	{"SetLeaseState", testSetLeaseState},
	{"SetLeaseStateErrorText", testSetLeaseStateErrorText},
	{"LeaseQueries", testLeaseQueries},
	{"LeasesConcurrent", testLeasesConcurrent},
	{"RequestApprovalReuse", testRequestApprovalReuse},
	{"RequestApprovalInvalid", testRequestApprovalInvalid},
	{"DecideApproval", testDecideApproval},
	{"ConsumeApproval", testConsumeApproval},
	{"ListApprovals", testListApprovals},
	{"ApprovalSurvivesReopen", testApprovalSurvivesReopen},
	{"RequestApprovalConcurrentWriters", testRequestApprovalConcurrentWriters},
	{"DecideApprovalConcurrentWriters", testDecideApprovalConcurrentWriters},
	{"ReplicaHeartbeat", testReplicaHeartbeat},
	{"ClaimLeasesDue", testClaimLeasesDue},
	{"ClaimAbandonedLeases", testClaimAbandonedLeases},
	{"Installation", testInstallation},
	{"CallsInFlight", testCallsInFlight},
}

// TestSuite runs the suite against both dialects. PostgreSQL is one server
// for the whole suite; each store is a schema of its own on it. Under
// CI=true a missing PostgreSQL fails the test.
func TestSuite(t *testing.T) {
	for _, b := range []backend{sqliteBackend(), postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range suite {
				t.Run(c.name, func(t *testing.T) { c.run(t, b) })
			}
		})
	}
}

// backend is one kind of store the suite runs against.
type backend struct {
	name    string
	dialect sqldialect.Dialect
	// url returns the URL of a new, empty store, for tests that open it
	// more than once (reopen, several writers).
	url func(t *testing.T) string
}

// open opens a new, empty store, closed when t ends.
func (b backend) open(t *testing.T) *Store {
	t.Helper()
	return openURL(t, b.url(t))
}

func openURL(t *testing.T, u string) *Store {
	t.Helper()
	s, err := Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sqliteBackend() backend {
	return backend{name: "sqlite", dialect: sqldialect.SQLite, url: func(t *testing.T) string {
		return "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	}}
}

var pgSchemas atomic.Int64

// postgresBackend starts a PostgreSQL server for t; each url is a new,
// empty schema on it (search_path in the URL), which is much cheaper than a
// database per store.
func postgresBackend(t *testing.T) backend {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE store")
	return backend{name: "postgres", dialect: sqldialect.Postgres, url: func(t *testing.T) string {
		t.Helper()
		schema := "s" + strconv.FormatInt(pgSchemas.Add(1), 10)
		pg.ExecDB(t, "store", "CREATE SCHEMA "+schema)
		return pgURL(pg, "store", "postgres", schema)
	}}
}

// pgURL is a postgres:// store URL for database name on pg, as user, over
// the server's unix socket (trust), in schema (when not empty).
func pgURL(pg *testenv.Postgres, name, user, schema string) string {
	q := url.Values{"host": {pg.SocketDir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}
	if schema != "" {
		q.Set("search_path", schema)
	}
	return fmt.Sprintf("postgres://%s@/%s?%s", user, name, q.Encode())
}
