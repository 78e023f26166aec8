package tools

import (
	"context"
	"errors"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// Previewer is implemented by tools that can show approvers what a held
// call would do without doing it (query_db: EXPLAIN of a write). The broker
// calls Preview for calls policy holds for approval, before the approval is
// requested, and shows the Impact on the approval page and in webhooks.
//
// Preview must not change anything on the target: it runs nothing the
// call's facts have not shown to be a single plain statement of a kind it
// can explain, and only in a way the target itself keeps read-only. A
// preview that cannot be made returns an error wrapping ErrNoPreview (the
// reason, one sentence for approvers) or any other error; the call is held
// all the same, and the page says why there is no preview.
type Previewer interface {
	Preview(ctx context.Context, target PreviewTarget, args Args, facts policy.Facts) (*Impact, error)
}

// PreviewTarget is what Preview needs besides the arguments: the resource,
// the grant the call would run under (the preview uses its privileges), and
// a bound on the time it may take.
type PreviewTarget struct {
	Resource  Resource
	GrantName string
	Grant     Grant
	Timeout   time.Duration
}

// DefaultPreviewTimeout bounds one preview when the target names none.
const DefaultPreviewTimeout = 2 * time.Second

// Impact is what a held call would do, as far as it can be known safely.
// It holds no secret and no row of data: plan estimates and names only.
type Impact struct {
	// Kind says how the impact was found: "explain" (PostgreSQL's planner
	// estimate, nothing executed), "dry-run" (a Kubernetes server-side dry
	// run compared with the live object: Plan is the diff) or "read" (the
	// live object read, e.g. a scale's current replicas).
	Kind string `json:"kind"`
	// Role is the role the estimate was made under (the grant's).
	Role string `json:"role,omitempty"`
	// Statement is the statement's kind (update, delete, insert, merge).
	Statement string `json:"statement,omitempty"`
	// EstimatedRows is the planner's estimate of the rows the statement
	// touches (the rows its scan under the write node produces).
	EstimatedRows int64 `json:"estimated_rows"`
	// Tables are the tables the plan touches, schema-qualified, the
	// written one first.
	Tables []string `json:"tables"`
	// Plan is the plan in text form, as EXPLAIN prints it.
	Plan string `json:"plan,omitempty"`
	// Duration is how long the preview took.
	Duration time.Duration `json:"duration_ns,omitempty"`
}

// ErrNoPreview means a preview was not made on purpose: the call is not of
// a kind that can be previewed safely. Its text says why.
var ErrNoPreview = errors.New("no preview")
