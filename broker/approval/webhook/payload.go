package webhook

import (
	"encoding/json"
	"time"
)

// EventApprovalRequested is the payload type of approval webhooks (the
// checkpoint webhook sends EventTranscriptCheckpoint).
const EventApprovalRequested = "approval.requested"

// Payload is the JSON body of a webhook in the default format.
//
// Arguments come from the agent and are masked, but they are still
// untrusted text: escape them before rendering.
type Payload struct {
	Type     string          `json:"type"` // "approval.requested"
	Approval PayloadApproval `json:"approval"`
}

// PayloadApproval describes the held call.
type PayloadApproval struct {
	ID        string          `json:"id"`
	Requester Person          `json:"requester"`
	Tool      string          `json:"tool"`
	Resource  string          `json:"resource"`
	Arguments json.RawMessage `json:"arguments"`
	// Rule is the rule that asked for approval; Rules every rule that
	// matched, with its message.
	Rule      string    `json:"rule"`
	Rules     []Rule    `json:"rules"`
	Approvers Approvers `json:"approvers"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Links     Links     `json:"links"`
	// Impact is what the call would do, estimated without doing it (for
	// query_db writes: EXPLAIN under the grant's role; Kubernetes writes: a
	// server-side dry-run diff), or why there is no
	// estimate: {"impact": {...}} or {"unavailable": "..."}. Absent for
	// tools that make no previews.
	Impact json.RawMessage `json:"impact,omitempty"`
}

// Person names a requester.
type Person struct {
	Subject string `json:"subject"`
	Email   string `json:"email,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
}

// Rule is one policy rule that matched the call.
type Rule struct {
	Rule    string `json:"rule"`
	Effect  string `json:"effect"`
	Message string `json:"message,omitempty"`
}

// Approvers says who may decide and how many must approve.
type Approvers struct {
	Groups []string `json:"groups"`
	Min    int      `json:"min"`
}

// Links point at airlock: the page an approver opens, and the JSON API
// resource (GET it; POST …/approve or …/deny with a bearer token).
type Links struct {
	Page string `json:"page"`
	API  string `json:"api"`
}
