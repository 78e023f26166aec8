package broker_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
	"github.com/airlock-mcp/airlock/tools/postgres"
)

// A profile with `enforce: privileges` through the whole pipeline: the
// broker passes the deciding rule's profile to the lease manager, which
// mints (and reuses) enforced and unenforced leases apart.

// enforcePolicy picks the profile by max_rows, so one identity makes calls
// under both: 7 selects the unenforced profile, anything else the enforced.
const enforcePolicy = `
rules:
  - name: plain-reads
    when: tool == "query_db" && sql.read_only && args.max_rows == 7
    effect: allow
    grant: readonly
    mask: pii_plain
  - name: guarded-reads
    when: tool == "query_db" && sql.read_only
    effect: allow
    grant: readonly
    mask: pii
`

// acquired is one Acquire the broker made.
type acquired struct {
	guard   string // GuardKey, "" for none
	leaseID string
	handle  string
	reused  bool
}

type guardSpy struct {
	*lease.Manager
	mu   sync.Mutex
	seen []acquired
}

func (s *guardSpy) Acquire(ctx context.Context, res tools.Resource, grant string, guard tools.ColumnGuard, id policy.Identity, callID string, beforeMint func(context.Context) error) (*lease.Lease, error) {
	l, err := s.Manager.Acquire(ctx, res, grant, guard, id, callID, beforeMint)
	if err == nil {
		a := acquired{leaseID: l.Record.ID, handle: l.Record.Handle, reused: l.Reused}
		if guard != nil {
			a.guard = guard.GuardKey()
		}
		s.mu.Lock()
		s.seen = append(s.seen, a)
		s.mu.Unlock()
	}
	return l, err
}

func newEnforcedPipeline(t *testing.T) (*broker.Broker, *guardSpy, *testenv.Postgres, *recorder.Recorder) {
	t.Helper()
	ctx := context.Background()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE shop")
	seed, err := os.ReadFile(filepath.Join("..", "examples", "demo", "seed.sql"))
	if err != nil {
		t.Fatal(err)
	}
	pg.ExecDB(t, "shop", string(seed))
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	res, err := postgres.NewKind().Open(tools.ResourceSpec{
		Name: "shop", Kind: "postgres", AdminDSNEnv: "DSN",
		Grants: map[string]tools.Grant{"readonly": {Roles: []string{"shop_reader"}, TTL: 10 * time.Minute}},
	}, mapEnv{"DSN": pg.DSN("shop")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	pol, err := policy.Parse([]byte(enforcePolicy), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := masking.DefaultConfig()
	plain := cfg.Profiles["pii"]
	enforced := plain
	enforced.Enforce = masking.EnforcePrivileges
	cfg.Profiles["pii"], cfg.Profiles["pii_plain"] = enforced, plain
	engine, err := masking.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b *broker.Broker
	mgr, err := lease.New(lease.Config{
		Store:   st,
		Resolve: func(name string) (tools.Resource, bool) { r, ok := b.State().Resources[name]; return r, ok },
		OnEvent: func(ctx context.Context, ev lease.Event) error { return b.RecordLease(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	spy := &guardSpy{Manager: mgr}
	b, err = broker.New(broker.Config{Tools: postgres.Tools(), Recorder: rec, Leases: spy}, &broker.State{
		Policy:    pol,
		Resources: map[string]tools.Resource{"shop": res},
		Masking:   engine,
		Limits:    tools.Limits{MaxRows: 1000, MaxBytes: 1 << 20, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	return b, spy, pg, rec
}

func TestEnforcedProfileThroughTheBroker(t *testing.T) {
	b, spy, pg, rec := newEnforcedPipeline(t)
	call := func(sql string, maxRows int) broker.Result {
		args := map[string]any{"resource": "shop", "sql": sql}
		if maxRows > 0 {
			args["max_rows"] = maxRows
		}
		raw, _ := json.Marshal(args)
		return b.Handle(context.Background(), broker.Call{Tool: "query_db", Arguments: raw, Identity: agent})
	}

	// 1. Enforced: PostgreSQL refuses the column; the agent reads why.
	r := call("SELECT name, email FROM customers", 0)
	if !r.IsError || !strings.Contains(r.Text, "SQLSTATE 42501") || !strings.Contains(r.Text, "name the columns you need") {
		t.Fatalf("enforced SELECT email: %s", r.Text)
	}
	// 2. Unenforced profile, same identity and grant: a new lease, and the
	//    email comes back masked by the broker (the first wall).
	r = call("SELECT name, email FROM customers ORDER BY id", 7)
	if r.IsError || !strings.Contains(r.Text, "Grace Hopper") || !strings.Contains(r.Text, "[COLUMN]") {
		t.Fatalf("unenforced SELECT email: %s", r.Text)
	}
	// 3 and 4. Each kind of call reuses its own lease.
	if r = call("SELECT id, name FROM customers", 0); r.IsError {
		t.Fatalf("enforced SELECT id, name: %s", r.Text)
	}
	if r = call("SELECT id, name FROM customers", 7); r.IsError {
		t.Fatalf("unenforced SELECT id, name: %s", r.Text)
	}

	seen := spy.seen
	if len(seen) != 4 {
		t.Fatalf("acquired %d leases, want 4: %+v", len(seen), seen)
	}
	if seen[0].guard == "" || !strings.HasPrefix(seen[0].guard, "pii:") || seen[1].guard != "" {
		t.Fatalf("guards passed to the lease manager: %+v", seen)
	}
	if seen[0].reused || seen[1].reused || seen[0].leaseID == seen[1].leaseID {
		t.Fatalf("an enforced and an unenforced call shared a lease: %+v", seen)
	}
	if !seen[2].reused || seen[2].leaseID != seen[0].leaseID || !seen[3].reused || seen[3].leaseID != seen[1].leaseID {
		t.Fatalf("leases were not reused for the same profile: %+v", seen)
	}
	// PostgreSQL's view: only the unenforced lease's role is a member of the
	// grant's role.
	members := pg.Query(t, "shop", `SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE m.roleid = 'shop_reader'::regrole AND r.rolname LIKE 'airlock\_%'`)
	if len(members) != 1 || members[0] != seen[1].handle {
		t.Fatalf("members of shop_reader: %v, want only the unenforced lease's role %s", members, seen[1].handle)
	}

	// Nothing protected reached the transcript either.
	evs, err := rec.Events(context.Background(), recorder.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := json.Marshal(evs)
	for _, v := range []string{"grace@example.org", "5555-5555-5555-4444"} {
		if strings.Contains(string(all), v) {
			t.Errorf("the transcript holds %q", v)
		}
	}
}
