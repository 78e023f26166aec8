package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// The whole pipeline against a real PostgreSQL holding the demo's data.

type mapEnv map[string]string

func (e mapEnv) Getenv(k string) (string, bool)    { v, ok := e[k]; return v, ok }
func (e mapEnv) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }

// spyLeases records the credentials handed out, so a test can look for the
// secret where it must never be.
type spyLeases struct {
	*lease.Manager
	mu    sync.Mutex
	creds []tools.Credential
}

func (s *spyLeases) Acquire(ctx context.Context, res tools.Resource, grant string, guard tools.ColumnGuard, id policy.Identity, callID string, beforeMint func(context.Context) error) (*lease.Lease, error) {
	l, err := s.Manager.Acquire(ctx, res, grant, guard, id, callID, beforeMint)
	if err == nil {
		s.mu.Lock()
		s.creds = append(s.creds, l.Credential)
		s.mu.Unlock()
	}
	return l, err
}

// countingRecorder counts the store transactions the broker asks for.
type countingRecorder struct {
	*recorder.Recorder
	n atomic.Int32
}

func (r *countingRecorder) AppendWith(ctx context.Context, ev recorder.Event, hook recorder.TxHook) (recorder.Event, error) {
	r.n.Add(1)
	return r.Recorder.AppendWith(ctx, ev, hook)
}

func (r *countingRecorder) AppendAllWith(ctx context.Context, evs []recorder.Event, hooks []recorder.TxHook) ([]recorder.Event, error) {
	r.n.Add(1)
	return r.Recorder.AppendAllWith(ctx, evs, hooks)
}

type pipeline struct {
	commits *countingRecorder
	pg      *testenv.Postgres
	broker  *broker.Broker
	leases  *spyLeases
	rec     *recorder.Recorder
	dbPath  string
	log     *bytes.Buffer
}

const pipelinePolicy = `
rules:
  - name: eng-reads
    when: tool in ["query_db", "list_tables", "describe_table"] && "eng" in identity.groups && sql.read_only
    effect: allow
    grant: readonly
    mask: pii
  - name: writers-write
    when: tool == "query_db" && "writer" in identity.groups
    effect: allow
    grant: readwrite
    mask: pii
`

func newPipeline(t testing.TB) *pipeline {
	t.Helper()
	return newPipelineStore(t, "")
}

// newPipelineStore is newPipeline with storeQuery after the SQLite store's
// path ("?synchronous=full").
func newPipelineStore(t testing.TB, storeQuery string) *pipeline {
	t.Helper()
	ctx := context.Background()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE shop")
	seed, err := os.ReadFile(filepath.Join("..", "examples", "demo", "seed.sql"))
	if err != nil {
		t.Fatal(err)
	}
	pg.ExecDB(t, "shop", string(seed))

	dir := t.TempDir()
	p := &pipeline{pg: pg, dbPath: filepath.Join(dir, "airlock.db"), log: &bytes.Buffer{}}
	st, err := store.Open(ctx, "sqlite://"+p.dbPath+storeQuery)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if p.rec, err = recorder.New(st.DB()); err != nil {
		t.Fatal(err)
	}
	res, err := postgres.NewKind().Open(tools.ResourceSpec{
		Name: "shop", Kind: "postgres", AdminDSNEnv: "DSN",
		Grants: map[string]tools.Grant{
			"readonly":  {Roles: []string{"shop_reader"}, TTL: 10 * time.Minute},
			"readwrite": {Roles: []string{"shop_writer"}, TTL: 5 * time.Minute, Access: tools.AccessReadWrite},
		},
	}, mapEnv{"DSN": pg.DSN("shop")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	pol, err := policy.Parse([]byte(pipelinePolicy), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(&syncWriter{w: p.log}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var b *broker.Broker
	mgr, err := lease.New(lease.Config{
		Store:   st,
		Resolve: func(name string) (tools.Resource, bool) { r, ok := b.State().Resources[name]; return r, ok },
		OnEvent: func(ctx context.Context, ev lease.Event) error { return b.RecordLease(ctx, ev) },
		Logger:  logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.leases = &spyLeases{Manager: mgr}
	p.commits = &countingRecorder{Recorder: p.rec}
	b, err = broker.New(broker.Config{Tools: postgres.Tools(), Recorder: p.commits, Leases: p.leases, Logger: logger}, &broker.State{
		Policy:    pol,
		Resources: map[string]tools.Resource{"shop": res},
		Masking:   engine,
		Limits:    tools.Limits{MaxRows: 1000, MaxBytes: 1 << 20, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	p.broker = b
	return p
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

var agent = policy.Identity{Subject: "agent-1", Groups: []string{"eng"}, Method: "local"}

func (p *pipeline) query(t testing.TB, sql string) broker.Result {
	t.Helper()
	args, _ := json.Marshal(map[string]any{"resource": "shop", "sql": sql})
	return p.broker.Handle(context.Background(), broker.Call{Tool: "query_db", Arguments: args, Identity: agent})
}

// Mint a lease, then look for its password everywhere it must not be: the
// store (transcript and leases, WAL included), the log, the tool result.
func TestSecretNeverTravels(t *testing.T) {
	p := newPipeline(t)
	res := p.query(t, "SELECT name, email FROM customers ORDER BY id")
	if res.IsError {
		t.Fatalf("query refused: %s", res.Text)
	}
	who := p.query(t, "SELECT current_user")
	if len(p.leases.creds) != 2 || p.leases.creds[0].Handle() != p.leases.creds[1].Handle() {
		t.Fatalf("want one credential used by both calls, got %v", p.leases.creds)
	}
	cred := p.leases.creds[0].(*postgres.Credential)
	secret := cred.Secret().Reveal()
	if len(secret) < 20 {
		t.Fatalf("implausible password length %d", len(secret))
	}
	// The minted role really ran the query.
	if !strings.Contains(who.Text, cred.Handle()) {
		t.Errorf("current_user is not the minted role %s:\n%s", cred.Handle(), who.Text)
	}

	var stored []byte
	for _, f := range []string{p.dbPath, p.dbPath + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		stored = append(stored, b...)
	}
	if len(stored) == 0 {
		t.Fatal("store is empty")
	}
	raw, _ := json.Marshal(res)
	for where, data := range map[string][]byte{"store": stored, "log": p.log.Bytes(), "result": raw} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the lease's password is in the %s", where)
		}
	}
	if !bytes.Contains(stored, []byte(cred.Handle())) {
		t.Errorf("the store does not name the lease's role %s", cred.Handle())
	}
}

// PostgreSQL stopped mid-call: a clear error, recorded; the lease is revoked
// once the server is back.
func TestPostgresStoppedMidCall(t *testing.T) {
	p := newPipeline(t)
	if r := p.query(t, "SELECT 1"); r.IsError {
		t.Fatalf("warm-up refused: %s", r.Text)
	}
	done := make(chan broker.Result, 1)
	go func() { done <- p.query(t, "SELECT count(*) FROM generate_series(1, 2000000000)") }()
	time.Sleep(500 * time.Millisecond)
	p.pg.Stop(t)
	var res broker.Result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the call did not return after PostgreSQL stopped")
	}
	if !res.IsError {
		t.Fatalf("want an error, got %s", res.Text)
	}
	t.Logf("agent sees: %s", res.Text)
	evs, err := p.rec.Events(context.Background(), recorder.Filter{CallID: res.CallID})
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Type != "call.failed" {
		t.Errorf("last event %s, want call.failed", last.Type)
	}

	p.pg.Start(t)
	if err := p.leases.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if roles := p.pg.Query(t, "shop", `SELECT rolname FROM pg_roles WHERE rolname LIKE 'airlock\_%'`); len(roles) != 0 {
		t.Errorf("roles left after revocation: %v\nlog:\n%s", roles, p.log.String())
	}
}

// Ten million rows: cut at max_rows, and the call returns.
func TestHugeResultIsCut(t *testing.T) {
	p := newPipeline(t)
	args, _ := json.Marshal(map[string]any{"resource": "shop", "sql": "SELECT g, md5(g::text) FROM generate_series(1, 10000000) g", "max_rows": 100})
	res := p.broker.Handle(context.Background(), broker.Call{Tool: "query_db", Arguments: args, Identity: agent})
	if res.IsError {
		t.Fatalf("refused: %s", res.Text)
	}
	var m struct {
		Truncated bool    `json:"truncated"`
		Rows      [][]any `json:"rows"`
	}
	raw, _ := json.Marshal(res.Structured)
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || len(m.Rows) != 100 {
		t.Errorf("truncated = %v with %d rows, want true with 100", m.Truncated, len(m.Rows))
	}
}

// Store transactions per call on a warm lease, through the real postgres
// tools: query_db is recorded before it runs and with its outcome (two),
// a read or not, a view's or a table's; list_tables and describe_table,
// which can change nothing, once, with their outcome.
func TestReadStoreTransactions(t *testing.T) {
	p := newPipeline(t)
	p.pg.ExecDB(t, "shop", "CREATE VIEW customer_countries AS SELECT id, country FROM customers; GRANT SELECT ON customer_countries TO shop_reader")
	call := func(tool, args string) broker.Result {
		return p.broker.Handle(context.Background(), broker.Call{Tool: tool, Arguments: json.RawMessage(args), Identity: agent})
	}
	for _, tt := range []struct {
		tool, args string
		want       int32
	}{
		{"query_db", `{"resource":"shop","sql":"` + benchSQL + `"}`, 2},
		{"query_db", `{"resource":"shop","sql":"SELECT country FROM customer_countries WHERE id = 1"}`, 2},
		{"list_tables", `{"resource":"shop"}`, 1},
		{"describe_table", `{"resource":"shop","table":"customers"}`, 1},
	} {
		if r := call(tt.tool, tt.args); r.IsError { // the lease is warm after this
			t.Fatalf("%s %s: %s", tt.tool, tt.args, r.Text)
		}
		p.commits.n.Store(0)
		if r := call(tt.tool, tt.args); r.IsError {
			t.Fatalf("%s %s: %s", tt.tool, tt.args, r.Text)
		}
		if n := p.commits.n.Load(); n != tt.want {
			t.Errorf("%s %s: %d store transactions, want %d", tt.tool, tt.args, n, tt.want)
		}
	}
}

// BenchmarkQueryThroughBroker and BenchmarkQueryDirect run the same query on
// the same database in the same run: the ratio is the broker's overhead with
// a warm lease (decode, SQL facts, policy, lease reuse, BEGIN READ ONLY,
// masking, three transcript writes).
const benchSQL = "SELECT id, name, email, country FROM customers WHERE id = 3"

func BenchmarkQueryThroughBroker(b *testing.B) { benchQueryThroughBroker(b, newPipeline(b)) }

// BenchmarkQueryThroughBrokerSyncFull is BenchmarkQueryThroughBroker with
// the store's SQLite syncing its log at every commit (synchronous=full).
func BenchmarkQueryThroughBrokerSyncFull(b *testing.B) {
	benchQueryThroughBroker(b, newPipelineStore(b, "?synchronous=full"))
}

func benchQueryThroughBroker(b *testing.B, p *pipeline) {
	if r := p.query(b, benchSQL); r.IsError {
		b.Fatal(r.Text)
	}
	b.ResetTimer()
	for b.Loop() {
		if r := p.query(b, benchSQL); r.IsError {
			b.Fatal(r.Text)
		}
	}
}

func BenchmarkQueryDirect(b *testing.B) {
	p := newPipeline(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.pg.DSN("shop"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	b.ResetTimer()
	for b.Loop() {
		rows, err := conn.Query(ctx, benchSQL)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pgx.CollectRows(rows, pgx.RowToMap); err != nil {
			b.Fatal(err)
		}
	}
}

// Column rules hold however a query derives a value from a protected column:
// computed result columns are masked whole when the query refers to a
// protected column, a whole row, or SQL in a string. Other computed columns
// are left alone.
func TestComputedColumnsCannotLaunderProtectedData(t *testing.T) {
	p := newPipeline(t)
	tests := []struct {
		sql    string
		leak   string // must not appear
		expect string // must appear
	}{
		{"SELECT reverse(email) AS x FROM customers WHERE id = 1", "moc.elpmaxe@ada", "[COLUMN]"},
		{"SELECT encode(convert_to(email, 'UTF8'), 'base64') FROM customers WHERE id = 1", "YWRhQGV4YW1wbGUuY29t", "[COLUMN]"},
		{"SELECT row_to_json(c) FROM customers c WHERE id = 1", "ada@example.com", "[COLUMN]"},
		{"SELECT x FROM (SELECT lower(email) AS x FROM customers) s ORDER BY 1 LIMIT 1", "ada@example.com", "[COLUMN]"},
		{"SELECT query_to_xml('select card_number from customers', true, false, '')", "4111", "[COLUMN]"},
		{"SELECT count(*) AS n, upper(country) AS c FROM customers GROUP BY 2 ORDER BY 2 LIMIT 1", "[COLUMN]", "GB"},
	}
	for _, tt := range tests {
		res := p.query(t, tt.sql)
		if res.IsError {
			t.Errorf("%s: refused: %s", tt.sql, res.Text)
			continue
		}
		raw, _ := json.Marshal(res.Structured)
		if strings.Contains(string(raw), tt.leak) || strings.Contains(res.Text, tt.leak) {
			t.Errorf("%s: result contains %q:\n%s", tt.sql, tt.leak, res.Text)
		}
		if !strings.Contains(res.Text, tt.expect) {
			t.Errorf("%s: result lacks %q:\n%s", tt.sql, tt.expect, res.Text)
		}
	}
}

// queryResult is query_db's structured result, as the agent reads it.
type queryResult struct {
	Columns []struct {
		Name string `json:"name"`
	} `json:"columns"`
	Rows   [][]any           `json:"rows"`
	Masked map[string]string `json:"masked"`
}

func decodeQueryResult(t *testing.T, res broker.Result) queryResult {
	t.Helper()
	raw, _ := json.Marshal(res.Structured)
	var q queryResult
	if err := json.Unmarshal(raw, &q); err != nil {
		t.Fatalf("structured result: %v\n%s", err, raw)
	}
	return q
}

// The demo's protected values (pii profile: *.email, *.card_number), and
// the pieces the review's queries cut them into.
var demoSecrets = []string{
	"ada@example.com", "grace@example.org", "alan.turing@example.net", "kj@example.com", "edsger@example.nl", "liskov@example.edu",
	"4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011111111111117", "4012888888881881", "5105105105105100",
	"example.com", "4111 1111", "5555-5555", "37828224",
}

// Every path the security review found (and an attacker's variations) for
// a protected value to reach the agent, through the whole pipeline with the
// demo's data and pii profile: each such column comes back masked whole,
// and the result says why, in its structured content and its text.
func TestProtectedValuesAreMaskedWhereverTheyGo(t *testing.T) {
	p := newPipeline(t)
	fixture, err := os.ReadFile(filepath.Join("..", "tools", "postgres", "testdata", "provenance.sql"))
	if err != nil {
		t.Fatal(err)
	}
	p.pg.ExecDB(t, "shop", string(fixture))
	const (
		email   = "derived from public.customers.email (rule *.email)"
		card    = "derived from public.customers.card_number (rule *.card_number)"
		stats   = "unknown origin: statistics samples"
		unknown = "unknown origin: "
	)
	tests := []struct {
		sql    string
		writer bool
		masked map[string]string // column → the start of its reason; every other column is not masked whole
	}{
		{"SELECT name, email AS contact FROM customers", false, map[string]string{"contact": "column rule *.email"}},
		{"SELECT n, substr(cn,1,9), substr(cn,10) FROM customers AS c(i,n,e,cn)", false, map[string]string{"substr": card}},
		{"SELECT split_part(e,'@',1) AS local, split_part(e,'@',2) AS domain FROM customers AS c(i,n,e)", false, map[string]string{"local": email, "domain": email}},
		{"SELECT histogram_bounds, null_frac FROM pg_stats WHERE tablename = 'customers' AND attname IN ('email', 'card_number')", false, map[string]string{"histogram_bounds": stats}},
		{"SELECT most_common_vals, null_frac FROM pg_stats WHERE tablename = 'leads' AND attname = 'email'", false, map[string]string{"most_common_vals": stats}},
		{"SELECT stavalues1, stavalues2 FROM pg_statistic WHERE starelid = 'customers'::regclass", false, map[string]string{"stavalues1": unknown, "stavalues2": unknown}},
		{"SELECT most_common_vals FROM pg_stats_ext WHERE tablename = 'leads'", false, map[string]string{"most_common_vals": stats}},
		{"SELECT most_common_vals FROM pg_stats_ext_exprs WHERE tablename = 'leads'", false, map[string]string{"most_common_vals": stats}},
		{"SELECT mail FROM contacts", false, map[string]string{"mail": email}},
		{"SELECT upper(mail) FROM contacts", false, map[string]string{"upper": email}},
		{"SELECT m FROM contact_mail", false, map[string]string{"m": email}},
		{"WITH x(a) AS (SELECT email FROM customers) SELECT a||'' AS a FROM x", false, map[string]string{"a": email}},
		{"SELECT y FROM (SELECT email AS y FROM customers UNION ALL SELECT name FROM customers) s", false, map[string]string{"y": email}},
		{"SELECT x FROM customers c, LATERAL (SELECT c.card_number AS x) s", false, map[string]string{"x": "column rule *.card_number"}},
		{"SELECT upper(x) AS x FROM customers c, LATERAL (SELECT c.card_number AS x) s", false, map[string]string{"x": card}},
		{"SELECT u FROM customers c, unnest(array[c.email]) u", false, map[string]string{"u": email}},
		{"SELECT row_to_json(c) FROM customers c", false, map[string]string{"row_to_json": "derived from public.customers."}},
		{"SELECT c FROM customers c", false, map[string]string{"c": "derived from public.customers."}},
		{"SELECT json_build_object('e', email) AS j, array[card_number] AS a FROM customers", false, map[string]string{"j": email, "a": card}},
		{"SELECT o.item, (SELECT email FROM customers c WHERE c.id = o.customer_id) AS who FROM orders o", false, map[string]string{"who": email}},
		{"SELECT v.x FROM customers c, LATERAL (VALUES (c.email)) v(x)", false, map[string]string{"x": email}},
		{"SELECT lag(email) OVER (ORDER BY id) AS prev FROM customers", false, map[string]string{"prev": email}},
		{"SELECT string_agg(card_number, ',') AS cards FROM customers", false, map[string]string{"cards": card}},
		{"SELECT format('%s', email) AS f, coalesce(card_number, '') AS k, CASE WHEN true THEN email END AS w, email::varchar AS v FROM customers", false,
			map[string]string{"f": email, "k": card, "w": email, "v": email}},
		{"SELECT query_to_xml('select email from customers', true, false, '') AS x", false, map[string]string{"x": "unknown origin: function query_to_xml runs SQL given as text"}},
		{"UPDATE customers SET name = email WHERE id = 1 RETURNING id, name", true, map[string]string{"name": email}},
		{"INSERT INTO tickets VALUES (2, 'x') RETURNING body", true, map[string]string{"body": "unknown origin: a trigger runs before or instead of each row on public.tickets"}},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			id := agent
			if tt.writer {
				id = policy.Identity{Subject: "writer-1", Groups: []string{"writer"}, Method: "local"}
			}
			args, _ := json.Marshal(map[string]any{"resource": "shop", "sql": tt.sql})
			res := p.broker.Handle(context.Background(), broker.Call{Tool: "query_db", Arguments: args, Identity: id})
			if res.IsError {
				t.Fatalf("refused: %s", res.Text)
			}
			raw, _ := json.Marshal(res.Structured)
			for _, secret := range demoSecrets {
				if strings.Contains(string(raw), secret) || strings.Contains(res.Text, secret) {
					t.Errorf("result contains %q:\n%s", secret, res.Text)
				}
			}
			q := decodeQueryResult(t, res)
			if len(q.Rows) == 0 {
				t.Fatalf("no rows: the case proves nothing")
			}
			for i, c := range q.Columns {
				reason, protected := tt.masked[c.Name]
				got := q.Masked[c.Name]
				switch {
				case protected && !strings.HasPrefix(got, reason):
					t.Errorf("column %s: masked %q, want a reason starting %q", c.Name, got, reason)
				case !protected && got != "":
					t.Errorf("column %s: masked (%s), want its values", c.Name, got)
				}
				for _, row := range q.Rows {
					if protected && row[i] != nil && row[i] != "[COLUMN]" {
						t.Errorf("column %s: value %v, want [COLUMN]", c.Name, row[i])
					}
				}
				if protected && !maskedLineSays(res.Text, c.Name, got) {
					t.Errorf("the text does not say %s was masked and why:\n%s", c.Name, res.Text)
				}
			}
		})
	}
}

// maskedLineSays reports whether the text's "masked:" line names the column
// before its reason (render's own test checks the line exactly).
func maskedLineSays(text, column, reason string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "masked: ") {
			i := strings.Index(line, " ("+reason+")")
			return i > 0 && slices.Contains(strings.FieldsFunc(line[:i], func(r rune) bool { return r == ',' || r == ' ' || r == ';' }), column)
		}
	}
	return false
}

// What comes from no protected column keeps its values: it is not masked
// because a protected column appears elsewhere in the statement, or
// because the statement has a star.
func TestUnprotectedValuesStayReal(t *testing.T) {
	p := newPipeline(t)
	tests := []struct {
		sql    string
		want   []string          // must appear in the text
		masked map[string]string // the columns masked whole, with the start of their reason
	}{
		{"SELECT g FROM generate_series(1,3) g", []string{"1", "2", "3"}, nil},
		{"EXPLAIN SELECT * FROM customers", []string{"Seq Scan on customers"}, nil},
		{"SELECT count(*), max(email) FROM customers", []string{"6"}, map[string]string{"max": "derived from public.customers.email (rule *.email)"}},
		{"SELECT country, count(*) AS n FROM customers GROUP BY 1 ORDER BY 1", []string{"GB", "NL", "US"}, nil},
		{"SELECT c.name, o.item FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.email LIKE '%.com' ORDER BY 1, 2", []string{"Ada Lovelace", "Difference engine parts"}, nil},
		{"SELECT * FROM orders ORDER BY id LIMIT 1", []string{"Difference engine parts", "1843.00"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			res := p.query(t, tt.sql)
			if res.IsError {
				t.Fatalf("refused: %s", res.Text)
			}
			for _, want := range tt.want {
				if !strings.Contains(res.Text, want) {
					t.Errorf("text lacks %q:\n%s", want, res.Text)
				}
			}
			q := decodeQueryResult(t, res)
			for name, why := range q.Masked {
				if !strings.HasPrefix(why, tt.masked[name]) || tt.masked[name] == "" {
					t.Errorf("column %s masked (%s)", name, why)
				}
			}
			for name := range tt.masked {
				if q.Masked[name] == "" {
					t.Errorf("column %s not masked", name)
				}
			}
			if len(q.Masked) == 0 && strings.Contains(res.Text, "masked:") {
				t.Errorf("the text says something was masked:\n%s", res.Text)
			}
		})
	}
}
