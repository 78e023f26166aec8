package policy

import "time"

// Input is the typed environment every rule's `when` expression is compiled
// against and evaluated with. Field names in expressions come from the expr
// tags: `identity.groups`, `sql.read_only`, `resource.labels.env`.
//
// A name that is not here, or the expr name of a kind registered with
// RegisterFacts (kinds.go), is a load error: a kind outside this package
// adds its facts by registering them, not by adding a field here.
type Input struct {
	Identity Identity       `expr:"identity"`
	Tool     string         `expr:"tool"`
	Resource Resource       `expr:"resource"`
	Args     map[string]any `expr:"args"`
	SQL      SQL            `expr:"sql"`
	Shell    Shell          `expr:"shell"`
	K8s      K8s            `expr:"k8s"`
	Now      time.Time      `expr:"now"`

	// kind and kindFacts are the facts of a registered kind (SetFacts of
	// FactsOf): rules read them under the kind's name.
	kind      string
	kindFacts any
}

// Identity is who is calling, as established by broker/authn. Claims holds
// only verified claims.
type Identity struct {
	Subject string         `expr:"subject" json:"subject"`
	Email   string         `expr:"email" json:"email,omitempty"`
	Groups  []string       `expr:"groups" json:"groups,omitempty"`
	Claims  map[string]any `expr:"claims" json:"-"`
	// Issuer and TokenID tie a call back to the credential that proved the
	// identity (never the credential itself). Empty for local identities.
	Issuer  string `expr:"issuer" json:"issuer,omitempty"`
	TokenID string `expr:"token_id" json:"token_id,omitempty"`
	// Method says how the identity was established: "local" (configured for
	// stdio), "none" (unauthenticated loopback HTTP) or "oidc".
	Method string `expr:"method" json:"method"`
}

// InGroup reports whether the identity is a member of group.
func (id Identity) InGroup(group string) bool {
	for _, g := range id.Groups {
		if g == group {
			return true
		}
	}
	return false
}

// Resource is what policy may know about the target of a call.
type Resource struct {
	Name   string            `expr:"name"`
	Kind   string            `expr:"kind"`
	Labels map[string]string `expr:"labels"`
}

// SQL holds the facts PostgreSQL's own parser gives about a query_db call.
type SQL struct {
	// Statements lists each statement in order.
	Statements []Statement `expr:"statements" json:"statements"`
	// StatementCount is len(Statements), for brevity in rules.
	StatementCount int `expr:"statement_count" json:"statement_count"`
	// ReadOnly is true when every statement is a plain read: SELECT (without
	// locking clauses or SELECT INTO), SHOW, EXPLAIN without ANALYZE of a write,
	// and no function known to have side effects.
	ReadOnly bool `expr:"read_only" json:"read_only"`
	// Tables, TablesRead and TablesWritten are the union over all statements,
	// schema-qualified when the query qualifies them ("public.orders" stays
	// "orders" when written as "orders").
	Tables        []string `expr:"tables" json:"tables"`
	TablesRead    []string `expr:"tables_read" json:"tables_read"`
	TablesWritten []string `expr:"tables_written" json:"tables_written"`
	// Functions is the union of functions called, lower-case, qualified as
	// written ("pg_catalog.pg_terminate_backend" or "pg_terminate_backend").
	Functions []string `expr:"functions" json:"functions"`
	// ParseError is the parser's message when the SQL does not parse; the
	// other fields are then empty.
	ParseError string `expr:"parse_error" json:"parse_error,omitempty"`
}

// Statement describes one SQL statement.
type Statement struct {
	// Kind is one of: select, insert, update, delete, merge, create, alter,
	// drop, truncate, grant, revoke, copy, do, call, set, show, explain,
	// transaction, lock, vacuum, analyze, listen, notify, prepare, execute,
	// other.
	Kind          string   `expr:"kind" json:"kind"`
	TablesRead    []string `expr:"tables_read" json:"tables_read"`
	TablesWritten []string `expr:"tables_written" json:"tables_written"`
	// HasWhere is meaningful for update and delete: false means every row.
	HasWhere  bool     `expr:"has_where" json:"has_where"`
	Functions []string `expr:"functions" json:"functions"`
}

// Shell holds the facts a real shell parser gives about a run_ssh command.
type Shell struct {
	Commands        []Command `expr:"commands" json:"commands"`
	Programs        []string  `expr:"programs" json:"programs"`
	HasRedirect     bool      `expr:"has_redirect" json:"has_redirect"`
	WritesFiles     []string  `expr:"writes_files" json:"writes_files"`
	HasSubstitution bool      `expr:"has_substitution" json:"has_substitution"`
	UsesSudo        bool      `expr:"uses_sudo" json:"uses_sudo"`
	ParseError      string    `expr:"parse_error" json:"parse_error,omitempty"`
}

// Command is one simple command: its program and its arguments as the shell
// would see them after quote removal (unexpanded parameters stay literal).
type Command struct {
	Program string   `expr:"program" json:"program"`
	Args    []string `expr:"args" json:"args"`
}

// K8s holds the facts of a Kubernetes API request.
type K8s struct {
	Verb          string `expr:"verb" json:"verb"`
	Group         string `expr:"group" json:"group"`
	Version       string `expr:"version" json:"version"`
	Resource      string `expr:"resource" json:"resource"`
	Kind          string `expr:"kind" json:"kind"`
	Namespace     string `expr:"namespace" json:"namespace"`
	Name          string `expr:"name" json:"name"`
	LabelSelector string `expr:"label_selector" json:"label_selector"`
	AllNamespaces bool   `expr:"all_namespaces" json:"all_namespaces"`
	// Subresource is the subresource the request goes to: "log"
	// (kubectl_logs), "scale" (kubectl_scale); empty for the object itself.
	Subresource string `expr:"subresource" json:"subresource,omitempty"`
	// Container is the container kubectl_logs reads (empty: the pod's only
	// container; a pod with several needs one named).
	Container string `expr:"container" json:"container,omitempty"`
	// ReplicasFrom and ReplicasTo are kubectl_scale's change: the count the
	// caller says the object has now (checked against the cluster before the
	// write; a different count is refused) and the count asked for. Both
	// are 0 for other tools.
	ReplicasFrom int `expr:"replicas_from" json:"replicas_from,omitempty"`
	ReplicasTo   int `expr:"replicas_to" json:"replicas_to,omitempty"`
	// FieldsChanged lists the fields a write sets, as dotted paths
	// (spec.replicas, spec.template.spec.containers[name=app].image): the
	// manifest's fields for kubectl_apply (with those the API server
	// derives from them: serviceAccountName for the deprecated
	// serviceAccount, a container's securityContext.appArmorProfile for the
	// AppArmor annotation), the field patched for scale and rollout
	// restart. Sorted; empty for reads and deletes.
	FieldsChanged []string `expr:"fields_changed" json:"fields_changed,omitempty"`
}

// Facts is what a tool tells policy about one call. Only the field for the
// tool's own kind is set; a kind registered with RegisterFacts builds its
// Facts with FactsOf instead. Facts encode as JSON with one key per kind
// that has facts ({"sql": {...}}, {"http": {...}}; kinds.go).
type Facts struct {
	SQL   *SQL   `json:"sql,omitempty"`
	Shell *Shell `json:"shell,omitempty"`
	K8s   *K8s   `json:"k8s,omitempty"`

	// kind and value are a registered kind's facts (FactsOf).
	kind  string
	value any
}

// SetFacts copies a tool's facts into the input.
func (in *Input) SetFacts(f Facts) {
	if f.kind != "" {
		in.kind, in.kindFacts = f.kind, f.value
	}
	if f.SQL != nil {
		in.SQL = *f.SQL
	}
	if f.Shell != nil {
		in.Shell = *f.Shell
	}
	if f.K8s != nil {
		in.K8s = *f.K8s
	}
}

// Clone returns a deep copy of the facts: a tool that keeps facts (a cache of
// parses) hands out clones, so that nothing done to one call's facts reaches
// another's.
func (s SQL) Clone() SQL {
	c := s
	c.Statements = cloneSlice(s.Statements)
	for i := range c.Statements {
		st := &c.Statements[i]
		st.TablesRead = cloneSlice(st.TablesRead)
		st.TablesWritten = cloneSlice(st.TablesWritten)
		st.Functions = cloneSlice(st.Functions)
	}
	c.Tables = cloneSlice(s.Tables)
	c.TablesRead = cloneSlice(s.TablesRead)
	c.TablesWritten = cloneSlice(s.TablesWritten)
	c.Functions = cloneSlice(s.Functions)
	return c
}

// cloneSlice copies s, keeping the difference between nil and empty (facts
// encode an empty list as [], never null).
func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}
