package lease

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/tools"
	"github.com/airlock-mcp/airlock/tools/postgres"
)

type envMap map[string]string

func (e envMap) Getenv(n string) (string, bool)    { v, ok := e[n]; return v, ok }
func (e envMap) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }

// Two airlock installations, each with its own store, mint roles on one
// PostgreSQL cluster. Each loses track of its role (a store reset); the
// start-up cleanup of each drops its own role only, never the other's.
func TestOrphanCleanupIsScopedByInstallation(t *testing.T) {
	ctx := context.Background()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE ROLE app_readonly NOLOGIN")
	spec := tools.ResourceSpec{
		Name: "shop", Kind: postgres.KindName, AdminDSNEnv: "ADMIN_DSN",
		Grants: map[string]tools.Grant{"ro": {Roles: []string{"app_readonly"}, TTL: 10 * time.Minute}},
	}
	type install struct {
		st  *store.Store
		res tools.Resource
		m   *Manager
		id  string
	}
	open := func(name string) install {
		st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		id, err := st.Installation(ctx, uuid.NewString(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		res, err := postgres.NewKind().Open(spec, envMap{"ADMIN_DSN": pg.AdminDSN})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(res.Close)
		m, err := New(Config{
			Store:        st,
			Resolve:      func(string) (tools.Resource, bool) { return res, true },
			Installation: id,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Register(ctx); err != nil {
			t.Fatal(err)
		}
		return install{st: st, res: res, m: m, id: id}
	}
	a, b := open("a"), open("b")
	if a.id == b.id {
		t.Fatal("two stores share an installation id")
	}
	roles := map[string]string{}
	for name, in := range map[string]install{"a": a, "b": b} {
		l, err := in.m.Acquire(ctx, in.res, "ro", nil, alice, "call-"+name, nil)
		if err != nil {
			t.Fatal(err)
		}
		roles[name] = l.Record.Handle
		if got := pg.Query(t, "postgres", `SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1`, l.Record.Handle); !slices.Equal(got, []string{"airlock installation " + in.id}) {
			t.Errorf("role %s comment = %v, want its installation", l.Record.Handle, got)
		}
		// The store forgets the lease: its role is an orphan now.
		if err := in.st.SetLeaseState(ctx, l.Record.ID, store.LeaseFailed, "lost", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	pg.Exec(t, "CREATE ROLE airlock_unmarked NOLOGIN") // minted before installations, or by hand

	exists := func(role string) bool {
		return len(pg.Query(t, "postgres", `SELECT 1 FROM pg_roles WHERE rolname = $1`, role)) == 1
	}
	if err := a.m.Recover(ctx, []tools.Resource{a.res}); err != nil {
		t.Fatal(err)
	}
	if exists(roles["a"]) || !exists(roles["b"]) || !exists("airlock_unmarked") {
		t.Fatalf("after a's cleanup: a's role exists %v (want false), b's %v (want true), unmarked %v (want true)",
			exists(roles["a"]), exists(roles["b"]), exists("airlock_unmarked"))
	}
	if err := b.m.Recover(ctx, []tools.Resource{b.res}); err != nil {
		t.Fatal(err)
	}
	if exists(roles["b"]) || !exists("airlock_unmarked") {
		t.Errorf("after b's cleanup: b's role exists %v (want false), unmarked %v (want true)", exists(roles["b"]), exists("airlock_unmarked"))
	}
}
