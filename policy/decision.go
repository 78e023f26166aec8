package policy

import "time"

// Effect is what a rule asks for when it matches.
type Effect string

const (
	Allow   Effect = "allow"
	Deny    Effect = "deny"
	Approve Effect = "approve"
)

// Limits bound one execution. Zero means "not set by this rule": the broker
// fills in the resource's and its own defaults.
type Limits struct {
	MaxRows  int           `yaml:"max_rows" json:"max_rows,omitempty"`
	MaxBytes int64         `yaml:"max_bytes" json:"max_bytes,omitempty"`
	Timeout  time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// MultiStatement permits more than one SQL statement in one call.
	MultiStatement bool `yaml:"multi_statement" json:"multi_statement,omitempty"`
}

// Approvers says who may approve a call held by an `approve` rule.
type Approvers struct {
	Groups []string `yaml:"groups" json:"groups"`
	Min    int      `yaml:"min" json:"min"`
}

// Match is one rule that matched a call.
type Match struct {
	Rule    string `json:"rule"`
	Effect  Effect `json:"effect"`
	Message string `json:"message,omitempty"`
}

// Decision is the outcome of evaluating a policy against one call. It carries
// the constraints the credential and the execution must obey, not only yes/no.
type Decision struct {
	Effect Effect `json:"effect"`
	// Rule names the deciding rule; empty when nothing matched (default deny).
	Rule string `json:"rule,omitempty"`
	// Message is the deciding rule's message, or the default-deny sentence.
	Message string `json:"message"`
	// Matched lists every rule that matched, in policy order.
	Matched []Match `json:"matched"`

	// Grant, Mask, Limits and Approvers come from the deciding rule.
	Grant     string     `json:"grant,omitempty"`
	Mask      string     `json:"mask,omitempty"`
	Limits    Limits     `json:"limits"`
	Approvers *Approvers `json:"approvers,omitempty"`

	// PolicyVersion identifies the policy text that decided (a content hash).
	PolicyVersion string `json:"policy_version"`
}
