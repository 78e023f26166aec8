package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/recorder"
)

// pgStoreURL creates database name on pg and returns its store URL, as the
// superuser over the unix socket.
func pgStoreURL(t *testing.T, pg *testenv.Postgres, name string) string {
	t.Helper()
	pg.Exec(t, "CREATE DATABASE "+name)
	q := url.Values{"host": {pg.SocketDir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}
	return "postgres://postgres@/" + name + "?" + q.Encode()
}

// seedStore writes leases, an approval with a decision, and n calls of
// transcript to the store at u.
func seedStore(t *testing.T, u string, n int) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		l := store.Lease{ID: fmt.Sprintf("l%d", i), CallID: "c", Resource: "shop", Kind: "postgres", Grant: "ro",
			Subject: "alice", Issuer: "iss", Handle: fmt.Sprintf("airlock_l%d", i), State: store.LeaseActive, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := st.InsertLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	a := store.Approval{ID: "a1", Digest: "d1", CallID: "c1", Subject: "alice", Email: "a@x", Issuer: "iss", Tool: "query_db",
		Resource: "shop", Arguments: []byte(`{"sql":"DELETE FROM t"}`), Rule: "r", Rules: []byte(`[]`), ApproverGroups: []string{"dba"},
		MinApprovers: 2, PolicyVersion: "v1", State: store.ApprovalPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, _, err := st.RequestApproval(ctx, a, now); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"bob", "carol"} {
		d := store.ApprovalDecision{Subject: who, Issuer: "iss", Verdict: store.VerdictApprove, Reason: "ok", Via: "cli", At: now}
		if _, err := st.DecideApproval(ctx, "a1", d, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.EnqueueDeliveries(ctx, []store.Delivery{{ID: "dlv1", Webhook: "approvals-hooks.example.com-1a2b", Topic: "approval.requested",
		ApprovalID: "a1", CallID: "c1", Body: []byte(`{"approval":{"id":"a1"}}`), CreatedAt: now, NextAttemptAt: now}}); err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for _, typ := range []string{recorder.TypeCallReceived, recorder.TypeCallCompleted} {
			ev := recorder.Event{Type: typ, CallID: fmt.Sprintf("call-%d", i), Subject: "alice", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
			if i == 0 && typ == recorder.TypeCallReceived {
				// A clock an hour ahead: the events after it are further
				// behind it than transcript_meta's least slack.
				ev.Time = time.Now().Add(time.Hour)
			}
			if _, err := rec.Append(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := rec.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

// store copy moves everything from SQLite to a real PostgreSQL, verifies
// the chain there, refuses a non-empty target unless --replace, and what
// arrives is the same: the approval with its decisions in order, the
// leases, the chain and its checkpoint.
func TestStoreCopySQLiteToPostgres(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	from := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	seedStore(t, from, 50)
	to := pgStoreURL(t, pg, "copied")

	out, code := runCLI(t, "store", "copy", "--from", from, "--to", to)
	if code != 0 {
		t.Fatalf("store copy: exit %d:\n%s", code, out)
	}
	for _, want := range []string{"leases                 3 rows", "approval_decisions     2 rows", "transcript_events      100 rows",
		"transcript_checkpoints 1 rows", "transcript_meta        1 rows", "webhook_outbox         1 rows", "transcript chain verified on the target: 100 events, head #100"} {
		if !strings.Contains(out, want) {
			t.Errorf("store copy output lacks %q:\n%s", want, out)
		}
	}

	ctx := context.Background()
	dst, err := store.Open(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	a, err := dst.Approval(ctx, "a1")
	if err != nil || a.State != store.ApprovalApproved || len(a.Decisions) != 2 || a.Decisions[0].Subject != "bob" || a.Decisions[1].Subject != "carol" {
		t.Errorf("copied approval = %+v, %v", a, err)
	}
	// A delivery still waiting is sent by the target's replicas.
	if d, err := dst.Delivery(ctx, "dlv1"); err != nil || d.Done() || string(d.Body) != `{"approval":{"id":"a1"}}` || d.ApprovalID != "a1" {
		t.Errorf("copied delivery = %+v, %v", d, err)
	}
	if n, err := dst.CountLiveLeases(ctx); err != nil || n != 3 {
		t.Errorf("copied live leases = %d, %v", n, err)
	}
	rec, err := recorder.New(dst.DB())
	if err != nil {
		t.Fatal(err)
	}
	// The target keeps appending where the source stopped.
	ev, err := rec.Append(ctx, recorder.Event{Type: recorder.TypeCallReceived, CallID: "after-copy"})
	if err != nil || ev.Seq != 101 {
		t.Fatalf("append after copy = %d, %v; want seq 101", ev.Seq, err)
	}
	if cp, written, err := rec.Checkpoint(ctx); err != nil || !written || cp.ID != 2 {
		t.Errorf("checkpoint after copy = %+v, %v, %v; want id 2 (the identity follows the copied ids)", cp, written, err)
	}

	out, code = runCLI(t, "store", "copy", "--from", from, "--to", to)
	if code == 0 || !strings.Contains(out, "target store is not empty") || !strings.Contains(out, "--replace") {
		t.Errorf("copy into a non-empty target: exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, "store", "copy", "--from", from, "--to", to, "--replace")
	if code != 0 || !strings.Contains(out, "100 events, head #100") {
		t.Errorf("copy --replace: exit %d:\n%s", code, out)
	}
}

// A broken source chain is not copied.
func TestStoreCopyRefusesBrokenChain(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	from := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	seedStore(t, from, 5)
	db, err := sql.Open("sqlite", strings.TrimPrefix(from, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE transcript_events SET subject = 'mallory' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	to := pgStoreURL(t, pg, "target")
	out, code := runCLI(t, "store", "copy", "--from", from, "--to", to)
	if code != 1 || !strings.Contains(out, "broken at event #3") || !strings.Contains(out, "nothing copied") {
		t.Errorf("copy of a broken chain: exit %d:\n%s", code, out)
	}
}

// store migrate brings a new PostgreSQL store to the schema version and
// creates the transcript tables; running it again changes nothing. The
// password comes from password_env and is never printed.
func TestStoreMigratePostgres(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, `CREATE ROLE airlock_store LOGIN PASSWORD 'store-secret-pw'`)
	pg.Exec(t, `CREATE DATABASE migrated OWNER airlock_store`)
	t.Setenv("AIRLOCK_TEST_STORE_PW", "store-secret-pw")
	u := fmt.Sprintf("postgres://airlock_store@%s:%d/migrated?sslmode=disable&password_env=AIRLOCK_TEST_STORE_PW", pg.Host, pg.Port)
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(cfg, []byte("auth: {mode: none}\nstore: "+u+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		out, code := runCLI(t, "store", "migrate", "--config", cfg)
		want := fmt.Sprintf("(postgres): schema version %d, transcript tables ready", store.SchemaVersionWanted())
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("store migrate: exit %d, want %q:\n%s", code, want, out)
		}
		if strings.Contains(out, "store-secret-pw") {
			t.Errorf("output leaks the password:\n%s", out)
		}
	}
	tables := pg.Query(t, "migrated", `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	if got := strings.Join(tables, ","); got != "approval_decisions,approvals,calls_in_flight,installation,leases,replicas,schema_version,transcript_checkpoints,transcript_events,transcript_meta,webhook_outbox" {
		t.Errorf("tables = %s", got)
	}
}

// transcripts verify on PostgreSQL: intact, it says how far back the
// checkpoint's proof reaches; with the last events deleted after a
// checkpoint it fails, saying which were removed; a checkpoint key in the
// config is used to check the signature.
func TestTranscriptsVerifyCheckpointPostgres(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	u := pgStoreURL(t, pg, "verified")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "checkpoint.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("s", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(cfg, []byte("auth: {mode: none}\nstore: "+u+"\ntranscripts: {checkpoint_key_file: checkpoint.key}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := recorder.New(st.DB(), recorder.WithCheckpointKey([]byte(strings.Repeat("s", 40))))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := rec.Append(ctx, recorder.Event{Type: recorder.TypeCallReceived, CallID: fmt.Sprintf("c%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := rec.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(ctx, recorder.Event{Type: recorder.TypeCallReceived, CallID: "late"}); err != nil {
		t.Fatal(err)
	}

	out, code := runCLI(t, "transcripts", "verify", "--config", cfg)
	if code != 0 || !strings.Contains(out, "transcript intact: 11 events") ||
		!strings.Contains(out, "covers events #1 to #10 (signature checked with the checkpoint key); 1 later events are covered by the chain alone") {
		t.Fatalf("verify: exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, "transcripts", "verify", "--store", u)
	if code != 0 || !strings.Contains(out, "signature NOT checked") {
		t.Errorf("verify --store without the config: exit %d:\n%s", code, out)
	}

	pg.ExecDB(t, "verified", `DELETE FROM transcript_events WHERE seq >= 8`)
	out, code = runCLI(t, "transcripts", "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "events #8 to #10 were removed from its end") {
		t.Errorf("verify after truncation: exit %d:\n%s", code, out)
	}
}
