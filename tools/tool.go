// Package tools defines the contract between the broker and its backends.
//
// A backend package (tools/postgres, tools/ssh, ...) supplies a Kind for the
// resources it serves and the Tools that act on them. The broker owns the
// order of the stages; a backend only answers the questions each stage asks:
//
//	Tool.Decode   raw MCP arguments → typed Args (or a clear error)
//	Tool.Facts    Args → policy.Facts (what the call means), or ErrOpaque
//	Resource.Mint grant + identity → Credential (a lease's secret half)
//	Tool.Execute  Args + Credential + Limits → Output (structured, unmasked)
//	Tool.Render   masked Output → structured content + short text
//
// Backends never import broker; they import tools and policy only.
//
// A kind is one package. The built-in kinds (postgres, ssh, kubernetes)
// keep their settings in fields of ResourceSpec and Grant; any other kind
// keeps them in Settings, declares their types from its init
// (RegisterSettings, so `airlock config check` checks them strictly with
// lines) and reads them in Open with DecodeSettings (settings.go). Its facts
// are registered with policy.RegisterFacts and returned with
// policy.FactsOf. ForeignSettings names whose a misplaced key is.
// docs/writing-a-kind.md walks through a kind.
package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// Sentinel errors shared by backends. Wrap them with context; the broker maps
// them to tool results the agent can act on.
var (
	// ErrInvalidArguments means the agent sent arguments the tool cannot use.
	ErrInvalidArguments = errors.New("invalid arguments")
	// ErrRefused means the backend refused the call before it reached the
	// target system (e.g. a transaction-control statement).
	ErrRefused = errors.New("refused")
	// ErrBackendUnavailable means the target system could not be reached or
	// went away during the call.
	ErrBackendUnavailable = errors.New("backend unavailable")
	// ErrOpaque means the call contains something its facts cannot see
	// through (a shell construct that evaluates text as code, SQL run from a
	// string that is not a literal): the facts would be incomplete, so the
	// call is refused before policy, whatever the policy says.
	ErrOpaque = errors.New("the analysis cannot see through the call")
)

// OpaqueError is what Facts returns for a call its analysis cannot see
// through. Its text is one sentence for the agent naming the construct and,
// where there is one, what to write instead.
type OpaqueError struct {
	Reason string
}

// Opaque returns an OpaqueError with a formatted reason.
func Opaque(format string, args ...any) error {
	return &OpaqueError{Reason: fmt.Sprintf(format, args...)}
}

func (e *OpaqueError) Error() string { return e.Reason }
func (e *OpaqueError) Unwrap() error { return ErrOpaque }

// ResourceChecker is implemented by a tool whose calls the resource's own
// settings may refuse (kubectl_delete of a cluster-wide kind the resource
// does not list in cluster_scoped_writes). The broker asks right after it
// resolves the resource, before facts and policy, so such a call is never
// held for an approval it could not use; `airlock policy test` asks too. The
// error wraps ErrRefused, its text one sentence for the agent.
type ResourceChecker interface {
	CheckResource(spec ResourceSpec, args Args) error
}

// ReadOnlyCaller is implemented by a tool some or all of whose calls can
// change nothing outside their result: the target system refuses them any
// write (a PostgreSQL READ ONLY transaction, a GET to the Kubernetes API)
// and no code runs in them that could act some other way. The broker
// records such a call once, with its outcome, in one store transaction
// before the result leaves; every other call is recorded before it runs as
// well (docs/transcripts.md, when events are committed).
type ReadOnlyCaller interface {
	// ReadOnlyCall reports whether the call, run with cred, can change
	// nothing. It must agree with what Execute sends, and say false when
	// unsure (code of the target's own that the call may run): the call is
	// then recorded before it runs.
	ReadOnlyCall(cred Credential, args Args) bool
}

// Tool is one MCP tool served through the broker.
type Tool interface {
	// Name is the MCP tool name, e.g. "query_db".
	Name() string
	// Kind is the resource kind the tool acts on ("postgres"); empty for tools
	// that need no resource.
	Kind() string
	// Description is written for an LLM: what the tool does and when to use it.
	Description() string
	// InputSchema is the JSON Schema of the arguments (an object schema).
	InputSchema() json.RawMessage
	// ReadOnly reports whether the tool can only read (an MCP annotation hint;
	// policy still decides).
	ReadOnly() bool
	// Decode validates raw arguments. Errors wrap ErrInvalidArguments and say
	// which argument is wrong and what would be valid.
	Decode(raw json.RawMessage) (Args, error)
	// Facts describes the call for policy. The facts are complete or there
	// are none: when the analysis cannot see through part of the call, Facts
	// returns an error wrapping ErrOpaque whose text names the construct in
	// one sentence, and the broker refuses the call before policy. Text that
	// does not parse is rejected earlier, by Decode.
	Facts(args Args) (policy.Facts, error)
	// Execute runs the call with a leased credential. The output is unmasked:
	// the broker masks it before anything else sees it.
	Execute(ctx context.Context, target Target, args Args) (*Output, error)
	// Render turns a masked Output into MCP structured content and a short
	// text rendering for the model.
	Render(out *Output) (structured any, text string)
}

// Args are a tool's decoded arguments.
type Args interface {
	// ResourceName is the resource the call targets.
	ResourceName() string
	// Canonical is a stable JSON encoding of the arguments, used for approval
	// digests and transcripts.
	Canonical() json.RawMessage
}

// Target is everything Execute needs besides the arguments.
type Target struct {
	Resource   Resource
	Credential Credential
	Limits     Limits
	Identity   policy.Identity
	CallID     string
	Logger     *slog.Logger
}

// Limits bound one execution; the broker resolves them from policy, the
// arguments and defaults before Execute, so every field is set.
type Limits struct {
	MaxRows        int
	MaxBytes       int64
	Timeout        time.Duration
	MultiStatement bool
}

// Kind builds resources of one kind from their configuration.
type Kind interface {
	// Name is the value of `kind:` in config.
	Name() string
	// Open validates a resource's configuration and returns it ready to mint
	// and execute. Open must not contact the backend; Check does.
	Open(spec ResourceSpec, env Environment) (Resource, error)
}

// Environment resolves secret references (`*_env`, `*_file`) for Open.
type Environment interface {
	Getenv(name string) (string, bool)
	ReadFile(path string) ([]byte, error)
}

// Resource is one configured target: a database, a host, a cluster.
type Resource interface {
	Spec() ResourceSpec
	// Mint creates a credential for the lease described by req. It must be
	// idempotent with Revoke: a lease recorded but never minted (a crash
	// between the two) revokes cleanly.
	Mint(ctx context.Context, req MintRequest) (Credential, error)
	// Revoke withdraws the credential of a lease. Revoking a lease whose
	// credential no longer exists is not an error.
	Revoke(ctx context.Context, lease LeaseRef) error
	// Orphans lists the handles of credentials this broker created that
	// exist on the backend, so start-up can revoke those no live lease owns.
	// Kinds whose credentials expire by themselves return nil.
	Orphans(ctx context.Context) ([]string, error)
	// Reusable reports whether a lease may serve more than one call.
	Reusable() bool
	// Close releases connections held for the resource.
	Close()
}

// MintRequest describes the lease to mint a credential for.
type MintRequest struct {
	LeaseID   string
	Handle    string // from HandleNamer, recorded before Mint; may be empty
	GrantName string
	Grant     Grant
	Identity  policy.Identity
	CallID    string
	Expires   time.Time
	// Guard, when set, names columns the credential must not be able to
	// read at all: the backend has the target system refuse them (for
	// PostgreSQL, column-level privileges), beside the broker's masking.
	// It comes from the deciding rule's masking profile (`enforce:
	// privileges`). Kinds without columns ignore it.
	Guard ColumnGuard
}

// ColumnGuard is the set of protected columns a backend enforces at mint.
// masking.Profile implements it.
type ColumnGuard interface {
	// GuardKey identifies the guard's rules (its profile's name and a digest
	// of its column rules): a lease minted under one key serves calls under
	// that key only.
	GuardKey() string
	// Protects reports whether the values of schema.table.column must stay
	// unreadable to the credential.
	Protects(schema, table, column string) bool
}

// LeaseRef names a lease's credential on the backend.
type LeaseRef struct {
	LeaseID string
	Handle  string
}

// Credential is the secret half of a lease. Implementations must not print
// their secrets: String and LogValue redact.
type Credential interface {
	// Handle is the non-secret name of the credential on the backend (a role
	// name, a certificate serial, a service account) for leases and logs.
	Handle() string
	String() string
	LogValue() slog.Value
}

// HandleNamer is implemented by resources whose credential handle is known
// before minting (a generated role name), so the lease can be persisted with
// it before the credential exists.
type HandleNamer interface {
	Handle(leaseID string) string
}

// Output is what Execute returns: structured, so masking can work per column
// and per field. Exactly one of Table, Streams, Objects is set.
type Output struct {
	Table     *Table         `json:"table,omitempty"`
	Streams   *Streams       `json:"streams,omitempty"`
	Objects   []any          `json:"objects,omitempty"`
	Truncated bool           `json:"truncated"`
	Notice    string         `json:"notice,omitempty"`
	Duration  time.Duration  `json:"duration"`
	Extra     map[string]any `json:"extra,omitempty"`
}

// Table is a row result.
type Table struct {
	Columns []Column `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// Tag is the command tag, e.g. "SELECT 3" or "UPDATE 1".
	Tag string `json:"tag,omitempty"`
	// Masked says, per column name, why the broker masked that column's
	// values whole ("column rule *.email", "derived from
	// public.customers.email (rule *.email)", "unknown origin: ..."). The
	// broker fills it in; Render shows it so the model can rephrase.
	Masked map[string]string `json:"masked,omitempty"`
}

// Column describes one result column and where its values come from, as
// the backend resolved it from its own metadata (for PostgreSQL the row
// description's table OID and attribute number, view definitions and the
// statement's expressions), so that neither an alias nor a view nor an
// expression hides a protected column. Masking reads Table/Source, From and
// Unknown; it never looks at Name.
type Column struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Table  string `json:"table,omitempty"`  // "schema.table" the column belongs to (a table or a view), empty for computed columns
	Source string `json:"source,omitempty"` // the column's name in Table
	// From lists the base columns the values are derived from when that is
	// more than Table.Source itself: what a view column or a computed
	// column (upper(email), row_to_json(c)) reads. Empty for a plain table
	// column and for values derived from no column (a constant, count(*),
	// an EXPLAIN plan).
	From []ColumnOrigin `json:"from,omitempty"`
	// Unknown, when not empty, says why the backend cannot tell where the
	// values come from (a function that runs SQL from text, statistics
	// samples, a construct it does not follow). Such a column is masked whole
	// whenever the profile protects any column: fail closed.
	Unknown string `json:"unknown,omitempty"`
}

// ColumnOrigin names one base column a result column's values come from.
type ColumnOrigin struct {
	Table  string `json:"table"`  // "schema.table"
	Column string `json:"column"` // the column's name in Table
}

// Streams is the output of a command.
type Streams struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

// Exampler is implemented by tools whose smallest call needs more than a
// resource name. Example returns the arguments of a harmless, representative
// call on the resource; list_resources asks policy about it to tell whether
// the caller may use the tool there at all.
type Exampler interface {
	Example(resource string) json.RawMessage
}
