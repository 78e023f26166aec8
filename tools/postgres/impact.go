package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// The impact preview of a held write: what approvers see before they
// decide. It is EXPLAIN, never EXPLAIN ANALYZE, so the statement is planned
// and not run:
//
//	refuse unless the facts and the parse tree are one plain DML statement
//	  (insert, update, delete, merge), not opaque, not refused by Execute,
//	  calling no function or operator the planner itself might run to effect
//	admin connection (pooled), one transaction:
//	  BEGIN READ ONLY
//	  SET LOCAL statement_timeout, lock_timeout    (the preview's bound)
//	  SET LOCAL ROLE <the grant's role>           (its privileges and row security)
//	  no function of the database's own           (else no preview: planning runs
//	                                               functions, and user code could
//	                                               RESET ROLE to the admin's login)
//	  EXPLAIN (FORMAT JSON, VERBOSE) <statement>   (extended protocol, the call's params)
//	  EXPLAIN <statement>                          (the text plan shown)
//	  ROLLBACK                                     (undoes the SET LOCALs)
//	  close the connection                         (never back to the pool)
//
// EXPLAIN without ANALYZE does not execute the plan, and PostgreSQL itself
// refuses any write in a READ ONLY transaction, so nothing the statement
// names can change even if the analysis were wrong; the connection is
// closed afterwards, so no session state planning left behind survives.

var _ tools.Previewer = (*QueryDB)(nil)

// previewKinds are the statement kinds a preview explains.
var previewKinds = []string{"insert", "update", "delete", "merge"}

// Preview estimates what a held write would touch. See the comment above
// for the steps; errors wrapping tools.ErrNoPreview say why a call is not
// previewed, others why the preview failed (one sentence, no values).
func (*QueryDB) Preview(ctx context.Context, target tools.PreviewTarget, args tools.Args, facts policy.Facts) (*tools.Impact, error) {
	a, ok := args.(*QueryArgs)
	if !ok {
		return nil, ErrWrongTarget
	}
	res, ok := target.Resource.(*Resource)
	if !ok {
		return nil, ErrWrongTarget
	}
	st, err := previewable(a, facts)
	if err != nil {
		return nil, err
	}
	if len(target.Grant.Roles) != 1 {
		return nil, fmt.Errorf("%w: grant %s has %d roles, and an estimate is made under exactly one", tools.ErrNoPreview, target.GrantName, len(target.Grant.Roles))
	}
	role := target.Grant.Roles[0]
	timeout := target.Timeout
	if timeout <= 0 {
		timeout = tools.DefaultPreviewTimeout
	}
	pool, err := res.adminPool()
	if err != nil {
		return nil, err
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout+clientGrace)
	defer cancel()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: resource %s: %v", tools.ErrBackendUnavailable, res.spec.Name, adminError(err))
	}
	// The connection is closed after the preview, never returned to the
	// pool: whatever planning the agent's statement did to the session
	// (a function folded at plan time taking a session advisory lock, say)
	// must not reach the admin's next use of it. Held calls are rare and
	// wait for a human; a new admin connection costs nothing they notice.
	defer func() {
		c := conn.Hijack()
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.Close(closeCtx)
	}()
	pc := conn.Conn()
	ms := strconv.FormatInt(timeout.Milliseconds(), 10)
	// Our own text (an integer we format, a quoted identifier): the simple
	// protocol is safe for it. The statement goes through the extended
	// protocol below, with the call's params.
	begin := "BEGIN READ ONLY; SELECT pg_catalog.set_config('statement_timeout', '" + ms + "', true), pg_catalog.set_config('lock_timeout', '" + ms + "', true); SET LOCAL ROLE " + pgx.Identifier{role}.Sanitize()
	if _, err := pc.Exec(ctx, begin); err != nil {
		return nil, previewError(err, role, st)
	}
	// Planning evaluates functions (immutable ones are folded, stable ones
	// estimated), including those a view, a row security policy, an
	// operator, a cast or an overload reaches without the statement naming
	// them, and a function may RESET ROLE to the admin's login. Built-in
	// functions do nothing of the sort; user code might. So a database
	// with any function of its own (extensions' included) gets no preview.
	if err := noUserCode(ctx, pc); err != nil {
		return nil, err
	}
	imp, err := explain(ctx, pc, st)
	if err != nil {
		return nil, previewError(err, role, st)
	}
	// A function created while EXPLAIN planned: withhold what it made.
	if err := noUserCode(ctx, pc); err != nil {
		return nil, err
	}
	if _, err := pc.Exec(ctx, "ROLLBACK"); err != nil {
		return nil, previewError(err, role, st)
	}
	imp.Role = role
	imp.Duration = time.Since(started)
	return imp, nil
}

// maxPlanBytes bounds the plan text an approver and a webhook get.
const maxPlanBytes = 64 << 10

// noUserCode reports, as a tools.ErrNoPreview, a database that has
// functions of its own.
func noUserCode(ctx context.Context, conn *pgx.Conn) error {
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_proc WHERE oid >= $1", firstNormalObjectID).Scan(&n); err != nil {
		return fmt.Errorf("EXPLAIN was not attempted: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("%w: the database has %d functions of its own (user or extension code), which planning the statement could run with the admin's login, so it is not explained", tools.ErrNoPreview, n)
	}
	return nil
}

// previewable returns the one statement to explain, or why there is none.
func previewable(a *QueryArgs, facts policy.Facts) (execStatement, error) {
	no := func(format string, args ...any) (execStatement, error) {
		return execStatement{}, fmt.Errorf("%w: "+format, append([]any{tools.ErrNoPreview}, args...)...)
	}
	f := facts.SQL
	if f == nil || f.ParseError != "" {
		return no("the call has no SQL facts")
	}
	if f.StatementCount != 1 || len(f.Statements) != 1 {
		return no("only a single statement is explained, and this call has %d", len(f.Statements))
	}
	if k := f.Statements[0].Kind; !slices.Contains(previewKinds, k) {
		return no("only INSERT, UPDATE, DELETE and MERGE are explained, and this is %s", strings.ToUpper(k))
	}
	// The facts are the broker's; the parse is ours. Both must agree.
	p := a.parsed
	if p == nil {
		var err error
		if p, err = parseSQL(a.SQL); err != nil {
			return no("the SQL does not parse")
		}
	}
	if p.opaque != "" || len(p.statements) != 1 {
		return no("the analysis cannot see through the call")
	}
	s := p.statements[0]
	if s.refusal != "" {
		return no("query_db would refuse the statement")
	}
	if s.planEffect != "" {
		return no("even planning it may act: %s", s.planEffect)
	}
	n := s.node
	if n == nil || n.GetInsertStmt() == nil && n.GetUpdateStmt() == nil && n.GetDeleteStmt() == nil && n.GetMergeStmt() == nil {
		return no("the statement is not a plain INSERT, UPDATE, DELETE or MERGE")
	}
	if s.params > len(a.Params) {
		return no("the statement has more placeholders than params")
	}
	return execStatement{text: s.text, args: a.Params[:s.params], node: n}, nil
}

// explain runs the two EXPLAINs in the open transaction.
func explain(ctx context.Context, conn *pgx.Conn, st execStatement) (*tools.Impact, error) {
	args := append([]any{pgx.QueryExecModeDescribeExec}, st.args...)
	var raw []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON, VERBOSE) "+st.text, args...).Scan(&raw); err != nil {
		return nil, err
	}
	imp, err := impactOf(raw)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, "EXPLAIN "+st.text, args...)
	if err != nil {
		return nil, err
	}
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return nil, err
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	imp.Plan = strings.Join(lines, "\n")
	if len(imp.Plan) > maxPlanBytes {
		cut := strings.LastIndexByte(imp.Plan[:maxPlanBytes], '\n')
		if cut < 0 {
			cut = maxPlanBytes
		}
		imp.Plan = strings.ToValidUTF8(imp.Plan[:cut], "") + fmt.Sprintf("\n… (plan cut at %d of %d bytes)", cut, len(imp.Plan))
	}
	return imp, nil
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node the preview reads.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Operation string     `json:"Operation"`
	Relation  string     `json:"Relation Name"`
	Schema    string     `json:"Schema"`
	PlanRows  float64    `json:"Plan Rows"`
	Plans     []planNode `json:"Plans"`
}

// impactOf reads the estimate from a JSON plan: the write node
// (ModifyTable) names the written table and, through its input, the rows
// it would touch; every node with a relation is a table the plan touches.
func impactOf(raw []byte) (*tools.Impact, error) {
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc) != 1 {
		return nil, errors.New("EXPLAIN returned a plan the preview cannot read")
	}
	imp := &tools.Impact{Kind: "explain", Tables: []string{}}
	var write *planNode
	var walk func(n *planNode)
	walk = func(n *planNode) {
		if n.NodeType == "ModifyTable" && write == nil {
			write = n
		}
		if n.Relation != "" {
			name := n.Relation
			if n.Schema != "" {
				name = n.Schema + "." + n.Relation
			}
			if !slices.Contains(imp.Tables, name) {
				imp.Tables = append(imp.Tables, name)
			}
		}
		for i := range n.Plans {
			walk(&n.Plans[i])
		}
	}
	walk(&doc[0].Plan)
	if write == nil {
		return nil, errors.New("EXPLAIN returned a plan without a write")
	}
	imp.Statement = strings.ToLower(write.Operation)
	rows := write.PlanRows
	if len(write.Plans) > 0 && write.Plans[0].PlanRows > rows {
		rows = write.Plans[0].PlanRows
	}
	imp.EstimatedRows = int64(rows)
	return imp, nil
}

// previewError is why the preview failed, in words safe to show approvers:
// a database error is reduced as for the agent (errors.go).
func previewError(err error, role string, st execStatement) error {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "42501" && strings.Contains(pe.Message, "set role"):
		return fmt.Errorf("the admin connection may not SET ROLE %s (make it a member of the grant's role)", role)
	case errors.As(err, &pe) && (pe.Code == "57014" || pe.Code == "55P03"):
		return errors.New("EXPLAIN did not finish within the preview's time limit")
	case errors.As(err, &pe):
		return fmt.Errorf("EXPLAIN failed: %s", reduceMessage(pe, wordsOf([]execStatement{st})))
	case errors.Is(err, context.DeadlineExceeded):
		return errors.New("EXPLAIN did not finish within the preview's time limit")
	}
	return fmt.Errorf("%w: %v", tools.ErrBackendUnavailable, err)
}
