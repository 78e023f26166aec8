package broker

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4j: other ways than the URL's parameter for a PostgreSQL
// store's connections to run at a stricter isolation than READ COMMITTED.

// rt4jIsolations returns, for every connection of st's pool (all held at
// once, so each is a different one), the isolation of a statement run
// outside a transaction and of a store transaction (InTx) on it, and of a
// transcript append's transaction.
func rt4jIsolations(t *testing.T, st *store.Store) (outside, inTx map[string]int, appendIso string) {
	t.Helper()
	ctx := context.Background()
	outside, inTx = map[string]int{}, map[string]int{}
	var conns []*sql.Conn
	for range 10 {
		c, err := st.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var iso string
		if err := c.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&iso); err != nil {
			t.Fatal(err)
		}
		outside[iso]++
	}
	for _, c := range conns {
		c.Close()
	}
	for range 10 {
		var iso string
		if err := st.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&iso)
		}); err != nil {
			t.Fatal(err)
		}
		inTx[iso]++
	}
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.AppendWith(ctx, recorder.Event{Type: "rt4j.iso"}, func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&appendIso)
	}); err != nil {
		t.Fatal(err)
	}
	return outside, inTx, appendIso
}

// Attack 1: the role's default in the database (ALTER ROLE ... IN
// DATABASE ... SET), the database's, and a -c in the URL's options, all
// serializable. Every store transaction, every transcript transaction and
// every statement outside a transaction must be READ COMMITTED.
func TestRedTeam4jPGRoleAndOptionsIsolation(t *testing.T) {
	u, st0 := rt4hIsoDB(t, "serializable")
	var db string
	if err := st0.DB().QueryRow(`SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := st0.DB().Exec(fmt.Sprintf(`ALTER ROLE CURRENT_USER IN DATABASE %s SET default_transaction_isolation = 'repeatable read'`, db)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = st0.DB().Exec(fmt.Sprintf(`ALTER ROLE CURRENT_USER IN DATABASE %s RESET default_transaction_isolation`, db))
	})
	for _, extra := range []string{"", "&options=-c%20default_transaction_isolation%3Dserializable", "&options=-c%20transaction_isolation%3Dserializable"} {
		t.Run(extra, func(t *testing.T) {
			st, err := store.Open(context.Background(), u+extra)
			if err != nil {
				t.Logf("refused (fail closed): %v", err)
				return
			}
			t.Cleanup(func() { st.Close() })
			outside, inTx, app := rt4jIsolations(t, st)
			t.Logf("outside a transaction %v, InTx %v, append %s", outside, inTx, app)
			if outside["read committed"] != 10 || inTx["read committed"] != 10 || app != "read committed" {
				t.Errorf("not read committed: outside a transaction %v, InTx %v, append %s", outside, inTx, app)
			}
		})
	}
}

// Attack 2: a transaction of the store that changes its connection's
// session defaults (SET SESSION CHARACTERISTICS, or SET
// default_transaction_isolation, committed: a session setting outlives the
// transaction it was made in) and returns the connection to the pool.
// Transactions still begin with their own level: that holds, and is
// asserted. The connection default is then gone on that connection for
// statements outside a transaction (the store's single-statement updates
// would run at SERIALIZABLE and fail with 40001 under a concurrent update:
// closed, not open). airlock's code never sets a session default (TxHook's
// contract: SET LOCAL only), so that part is logged, not claimed.
func TestRedTeam4jPGSessionCharacteristicsOutliveTx(t *testing.T) {
	u, _ := rt4hIsoDB(t, "")
	for _, set := range []string{
		`SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE`,
		`SET default_transaction_isolation = 'serializable'`,
	} {
		t.Run(set, func(t *testing.T) {
			st := rt4eOpen(t, u)
			if err := st.InTx(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, set)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			outside, inTx, app := rt4jIsolations(t, st)
			t.Logf("after a committed %q: outside a transaction %v, InTx %v, append %s", set, outside, inTx, app)
			if inTx["read committed"] != 10 || app != "read committed" {
				t.Errorf("a store or transcript transaction not read committed: InTx %v, append %s", inTx, app)
			}
		})
	}
}
