package approval

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// Sentinel errors. Callers match them with errors.Is.
var (
	// ErrNotFound: no approval has this id.
	ErrNotFound = errors.New("approval not found")
	// ErrInvalid: a request or decision is missing something it needs.
	ErrInvalid = errors.New("invalid approval input")
	// ErrForbidden: the caller neither requested the approval nor may decide it.
	ErrForbidden = errors.New("only the requester or an approver may see this approval")
	// ErrSelfApproval: the approver is the requester (same subject and issuer).
	ErrSelfApproval = errors.New("you cannot decide your own request")
	// ErrNotApprover: the approver is in none of the rule's approver groups.
	ErrNotApprover = errors.New("you are not in any of this approval's approver groups")
	// ErrAlreadyDecided: this approver has already decided this approval.
	ErrAlreadyDecided = errors.New("you have already decided this approval")

	// The approval is not in a state that allows what was asked.
	ErrExpired     = errors.New("approval has expired")
	ErrConsumed    = errors.New("approval has already been used")
	ErrDenied      = errors.New("approval was denied")
	ErrApproved    = errors.New("approval is already approved")
	ErrNotApproved = errors.New("approval is not approved yet")

	// ErrUnrecorded: a decision could not be stored together with the
	// transcript event that records it, so neither was.
	ErrUnrecorded = errors.New("the decision could not be stored with its transcript event, so nothing changed; try again")
	// ErrChanged: other decisions kept landing on the approval while this
	// one was being stored.
	ErrChanged = errors.New("the approval kept changing while the decision was being stored; try again")
	// ErrUncertain: the store stopped answering as the decision was
	// committed, so whether it was stored (with its event) is not known.
	ErrUncertain = errors.New("the store stopped answering as the decision was stored, so whether it was is not known; check the approval before deciding again")
	// ErrExists: Draft.RequestTx found an approval the call should use
	// instead of the new one (Draft.Found), and wrote nothing.
	ErrExists = errors.New("an approval for this call already exists")
)

// State is where an approval is in its life.
//
//	pending ──min approvals──▶ approved ──Consume──▶ consumed
//	   │                          │
//	   ├──one deny──▶ denied      │
//	   └──expire passes───────────┴──▶ expired
type State string

// States. Expired is computed on read from ExpiresAt; the other states are
// stored.
const (
	Pending  State = "pending"
	Approved State = "approved"
	Denied   State = "denied"
	Expired  State = "expired"
	Consumed State = "consumed"
)

// Verdict is what an approver decides.
type Verdict string

// Verdicts.
const (
	Approve Verdict = "approve"
	Deny    Verdict = "deny"
)

// Where a decision was made; Decision.Via.
const (
	ViaWeb      = "web"
	ViaAPI      = "api"
	ViaCLILocal = "cli-local"
)

// maxReason bounds a decision's reason, in bytes.
const maxReason = 1000

// DefaultWait is how long a held call waits for a decision unless
// configured: under the 60s request timeout of the TypeScript SDK (and so
// of Claude Code), so a client that waits with the default timeout still
// hears "pending" and the approval id before it gives up.
const DefaultWait = 45 * time.Second

// Principal names a person: the requester of an approval or an approver.
// Groups are deliberately absent: membership is checked when a decision is
// made, from the approver's verified identity.
type Principal struct {
	Subject string `json:"subject"`
	Email   string `json:"email,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
}

// Is reports whether p is the person id proves (same subject and issuer).
//
// Without an issuer nobody vouches for a name: it was typed (auth.mode
// none, the web UI's local mode, the CLI's --as). Such names are the same
// person when they read the same: compared case-folded, without invisible
// characters, combining marks or spaces, and a name matches the other's
// e-mail too, so "Demo-User" or "demo@example.com" cannot approve
// demo-user's call. (A local process can still type any other name: local
// mode is a convenience on one machine, not a control against it.)
func (p Principal) Is(id policy.Identity) bool {
	if p.Issuer != id.Issuer {
		return false
	}
	if p.Subject == id.Subject {
		return true
	}
	if p.Issuer != "" {
		return false
	}
	mine := []string{foldName(p.Subject), foldName(p.Email)}
	for _, n := range []string{foldName(id.Subject), foldName(id.Email)} {
		if n != "" && slices.Contains(mine, n) {
			return true
		}
	}
	return false
}

// foldName is a typed name as people read it: compatibility-decomposed
// (fullwidth letters become ASCII, é becomes e and an accent), lower case,
// with only letters, digits and . - _ @ + kept, so accents, invisible
// characters, fillers and spaces do not make another name.
func foldName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == 0x115F || r == 0x1160 || r == 0x3164 || r == 0xFFA0: // Hangul fillers: letters that show nothing
			return -1
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			return unicode.ToLower(r)
		case strings.ContainsRune(".-_@+", r):
			return r
		}
		return -1
	}, norm.NFKD.String(s))
}

// Decision is one approver's verdict.
type Decision struct {
	Approver Principal `json:"approver"`
	Verdict  Verdict   `json:"verdict"`
	Reason   string    `json:"reason,omitempty"`
	Via      string    `json:"via"`
	At       time.Time `json:"at"`
}

// Approval is one call held for human approval.
type Approval struct {
	ID string `json:"id"`
	// Digest binds the approval to (requester, tool, resource, unmasked
	// canonical arguments, policy version): the same call made again has
	// the same digest and uses this approval.
	Digest    string          `json:"digest"`
	CallID    string          `json:"call_id"`
	Requester Principal       `json:"requester"`
	Tool      string          `json:"tool"`
	Resource  string          `json:"resource"`
	Arguments json.RawMessage `json:"arguments"` // masked
	// Rule is the rule that asked for approval; Rules every rule that matched.
	Rule          string           `json:"rule"`
	Rules         []policy.Match   `json:"rules"`
	Approvers     policy.Approvers `json:"approvers"`
	PolicyVersion string           `json:"policy_version"`

	State      State      `json:"state"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	DecidedAt  time.Time  `json:"decided_at,omitzero"`
	ConsumedAt time.Time  `json:"consumed_at,omitzero"`
	ConsumedBy string     `json:"consumed_by,omitempty"` // the call id that used it
	Decisions  []Decision `json:"decisions"`

	// URL is the approval page, when a public URL is configured.
	URL string `json:"url,omitempty"`
	// Impact is RequestInput.Impact on the approval Request returns (and
	// its webhooks carry); it is not stored, so approvals read back lack it.
	Impact json.RawMessage `json:"impact,omitempty"`
}

// Approvals counts the approve verdicts so far.
func (a Approval) Approvals() int {
	n := 0
	for _, d := range a.Decisions {
		if d.Verdict == Approve {
			n++
		}
	}
	return n
}

// MayDecide reports whether id is in one of the approver groups and is not
// the requester.
func (a Approval) MayDecide(id policy.Identity) bool {
	return !a.Requester.Is(id) && inAnyGroup(id, a.Approvers.Groups)
}

// MaySee reports whether id requested the approval or may decide it.
func (a Approval) MaySee(id policy.Identity) bool {
	return a.Requester.Is(id) || inAnyGroup(id, a.Approvers.Groups)
}

func inAnyGroup(id policy.Identity, groups []string) bool {
	for _, g := range groups {
		if id.InGroup(g) {
			return true
		}
	}
	return false
}

// Store is the persistence the manager needs; *store.Store implements it.
type Store interface {
	RequestApprovalTx(ctx context.Context, tx *sql.Tx, a store.Approval, now time.Time, deliveries ...store.Delivery) (store.Approval, bool, error)
	OpenApproval(ctx context.Context, digest string, now time.Time) (store.Approval, bool, error)
	DecideApprovalTx(ctx context.Context, tx *sql.Tx, id string, d store.ApprovalDecision, now time.Time, prior int) (store.Approval, error)
	InTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error
	ConsumeApprovalTx(ctx context.Context, tx *sql.Tx, id, callID string, now time.Time) (store.Approval, error)
	Approval(ctx context.Context, id string) (store.Approval, error)
	ListApprovals(ctx context.Context, f store.ApprovalFilter, now time.Time) ([]store.Approval, error)
	Outbox // webhook deliveries (deliver.go)
}

var _ Store = (*store.Store)(nil)

// Event types passed to Config.OnEvent.
const (
	EventDecided          = "approval.decided"           // a decision was recorded
	EventRefused          = "approval.refused"           // a decision attempt was refused; Data["reason"] says why
	EventWebhookDelivered = "approval.webhook_delivered" // a receiver answered 2xx
	EventWebhookFailed    = "approval.webhook_failed"    // one attempt failed; Data["final"] when retries are exhausted
)

// Event reports something that happened to an approval outside a tool call
// (a decision, a webhook delivery), for the transcript. It never holds a
// webhook secret or a full webhook URL (only its host).
type Event struct {
	Type       string
	ApprovalID string
	CallID     string // the call that requested the approval
	// Subject and Issuer name who acted (the approver); empty for webhooks.
	Subject, Issuer string
	Tool, Resource  string
	Data            map[string]any
	// Write, on a decision or a withdrawal, stores what the event records:
	// Config.OnEvent runs it in the transaction that appends the event. It
	// is no part of the event's text (json:"-").
	Write func(ctx context.Context, tx *sql.Tx) error `json:"-"`
}

// WebhookConfig is one receiver of new approvals.
type WebhookConfig struct {
	URL        string `yaml:"url"`
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
	// Format is "" or "json" (the signed Payload), or "slack" (an incoming
	// webhook message, also signed).
	Format string `yaml:"format"`
	// Secret is resolved from SecretEnv or SecretFile by the caller.
	Secret Secret `yaml:"-"`
}

// String names the webhook by host and format only: a webhook URL can be a
// credential (Slack's are).
func (w WebhookConfig) String() string {
	return fmt.Sprintf("webhook(%s, %s)", hostOf(w.URL), w.format())
}

// LogValue keeps URLs and secrets out of logs.
func (w WebhookConfig) LogValue() slog.Value { return slog.StringValue(w.String()) }

func (w WebhookConfig) format() string {
	if w.Format == "" {
		return FormatJSON
	}
	return w.Format
}

// Webhook formats.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
)

// Secret is a webhook signing secret. It does not print.
type Secret []byte

func (Secret) String() string   { return "[REDACTED]" }
func (Secret) GoString() string { return "[REDACTED]" }

// LogValue redacts the secret in slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// MarshalJSON redacts the secret.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[REDACTED]"`), nil }

// minSecret is the shortest signing secret accepted, in bytes.
const minSecret = 16

// Config configures a Manager.
type Config struct {
	Store    Store
	Webhooks []WebhookConfig
	// PublicURL is airlock's public URL (its /mcp endpoint, say); links in
	// webhooks use its origin. Required when webhooks are configured.
	PublicURL string
	// Wait is how long a held call waits for a decision (default 45s, under
	// the 60s request timeout common MCP clients use);
	// Expire how long an approval may be decided and then used (default 15m).
	Wait, Expire time.Duration
	// PollInterval is how often a waiting call rereads the store, which is
	// how it notices a decision made by another process (default 300ms).
	PollInterval time.Duration
	// ProgressInterval is how often Wait calls its progress func (default 5s).
	ProgressInterval time.Duration
	// Notifier tells waiting calls about changes made in this process
	// (default: an in-process notifier).
	Notifier Notifier
	// OnEvent receives decisions, refused decisions and webhook outcomes
	// for the transcript. A decision or a withdrawal is stored by its
	// event's Write, which OnEvent must run in the transaction that appends
	// the event (recorder.Recorder.AppendWith), returning its error: the
	// decision is stored with its event or not at all, and Decide fails if
	// either fails (or if OnEvent returns without running Write). Errors of
	// the other events are logged. The default, for no transcript, runs
	// Write in a store transaction of its own.
	OnEvent func(ctx context.Context, ev Event) error

	// Webhook delivery: attempts per delivery (default 5), the delay before
	// the second attempt, doubling after (default 3s, so ~45s in all), and
	// the timeout of one attempt (default 10s).
	WebhookAttempts int
	WebhookBackoff  time.Duration
	WebhookTimeout  time.Duration
	// Deliveries wait in the store's outbox (deliver.go). Replica names
	// this process in the claims it takes on them (default a random id);
	// WebhookPoll is how often idle workers look for deliveries enqueued by
	// another process or left by one that stopped (default 5s);
	// WebhookRetention is how long delivered and failed ones (and ones
	// for a webhook no longer configured) are kept (default 24h).
	Replica          string
	WebhookPoll      time.Duration
	WebhookRetention time.Duration
	// CheckpointWebhook, when set, receives each transcript checkpoint
	// given to PublishCheckpoint, signed, through the same outbox.
	CheckpointWebhook *WebhookConfig

	Clock      func() time.Time
	Logger     *slog.Logger
	HTTPClient *http.Client
}

// CheckAndSetDefaults validates the config and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Store == nil {
		return errors.New("approval: Store is required")
	}
	if c.Wait == 0 {
		c.Wait = DefaultWait
	}
	if c.Expire == 0 {
		c.Expire = 15 * time.Minute
	}
	switch {
	case c.Wait < 0 || c.Expire < 0:
		return errors.New("approvals: wait and expire must be positive")
	case c.Wait >= c.Expire:
		return fmt.Errorf("approvals: wait (%s) must be shorter than expire (%s)", c.Wait, c.Expire)
	}
	if c.PublicURL != "" {
		if _, err := originOf(c.PublicURL); err != nil {
			return err
		}
	}
	for i, w := range c.Webhooks {
		if err := checkWebhook(w, c.PublicURL); err != nil {
			return fmt.Errorf("approvals.webhooks[%d]: %w", i, err)
		}
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 300 * time.Millisecond
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 5 * time.Second
	}
	if c.Notifier == nil {
		c.Notifier = NewLocalNotifier()
	}
	if c.OnEvent == nil {
		st := c.Store
		c.OnEvent = func(ctx context.Context, ev Event) error {
			if ev.Write == nil || st == nil {
				return nil
			}
			return st.InTx(ctx, ev.Write)
		}
	}
	if c.WebhookAttempts <= 0 {
		c.WebhookAttempts = 5
	}
	if c.WebhookBackoff <= 0 {
		c.WebhookBackoff = 3 * time.Second
	}
	if c.WebhookTimeout <= 0 {
		c.WebhookTimeout = 10 * time.Second
	}
	if err := c.checkOutbox(); err != nil {
		return err
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			// A redirect would send a signed payload somewhere else (and
			// turn the POST into a GET): treat it as a failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return nil
}

func checkWebhook(w WebhookConfig, publicURL string) error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("url must be an absolute http(s) URL (host %q)", hostOf(w.URL))
	}
	switch w.format() {
	case FormatJSON:
		if len(w.Secret) < minSecret {
			return fmt.Errorf("%s: a signing secret of at least %d bytes is required (secret_env or secret_file)", w, minSecret)
		}
	case FormatSlack:
	default:
		return fmt.Errorf("%s: unknown format %q (json or slack)", w, w.Format)
	}
	if publicURL == "" {
		return fmt.Errorf("%s: public_url is required to link approvers to the approval page", w)
	}
	return nil
}

// originOf returns scheme://host of a URL.
func originOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("approvals: public_url %q must be an absolute http(s) URL", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}

// Manager creates, decides, waits for and consumes approvals, and tells
// webhooks about new ones.
type Manager struct {
	cfg    Config
	origin string // of PublicURL; "" when not configured
	hooks  []*sender
	// checkpoint is the sender of CheckpointWebhook, or nil.
	checkpoint *sender

	// settling serialises, by approval id, the decisions this process
	// stores: decisions on one approval in one group commit would all be
	// written from the same read, and all but one redone. Each stripe is
	// a one-slot semaphore, so a decision waiting for it gives up with its
	// context.
	settling [64]chan struct{}

	mu      sync.Mutex
	started bool
	closed  bool
	stop    context.CancelFunc // stops claiming deliveries
	cancel  context.CancelFunc // aborts attempts in flight
	wg      sync.WaitGroup
}

// New returns a Manager; it starts nothing (see Start).
func New(cfg Config) (*Manager, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg}
	for i := range m.settling {
		m.settling[i] = make(chan struct{}, 1)
	}
	if cfg.PublicURL != "" {
		m.origin, _ = originOf(cfg.PublicURL)
	}
	for _, w := range cfg.Webhooks {
		m.hooks = append(m.hooks, newSender(m, w, topicApproval))
	}
	if cfg.CheckpointWebhook != nil {
		m.checkpoint = newSender(m, *cfg.CheckpointWebhook, topicCheckpoint)
	}
	return m, nil
}

// RequestInput is what the broker knows about a call held for approval.
type RequestInput struct {
	Requester policy.Identity
	Tool      string
	Resource  string
	// Arguments are the canonical arguments, masked for display.
	Arguments json.RawMessage
	// ArgumentsDigest is sha256 of the canonical, unmasked arguments.
	ArgumentsDigest []byte
	// Decision is the policy decision (effect approve): its rules, messages,
	// approvers and policy version.
	Decision policy.Decision
	CallID   string
	// Impact is the call's impact preview (the broker's call.previewed
	// data), sent with the webhooks of a new approval; not stored.
	Impact json.RawMessage
}

// Digest binds an approval to one call: requester (subject and issuer),
// tool, resource, the digest of the unmasked canonical arguments, and the
// policy version. Fields are JSON-encoded as a list, so no two inputs
// share an encoding.
func Digest(requester policy.Identity, tool, resource string, argumentsDigest []byte, policyVersion string) string {
	enc, _ := json.Marshal([]string{
		"airlock-approval-v1", requester.Subject, requester.Issuer, tool, resource,
		hex.EncodeToString(argumentsDigest), policyVersion,
	})
	sum := sha256.Sum256(enc)
	return hex.EncodeToString(sum[:])
}

// Request returns the approval for a held call: an approved, unconsumed,
// unexpired one with the same digest (the call may proceed after Consume);
// else a pending one with the same digest (keep waiting); else a new
// pending approval, in which case created is true and every webhook is
// told about it: its deliveries enter the store's outbox in the approval's
// own transaction (an approval is never left untold by a crash), and are
// sent asynchronously: Request never waits for a receiver. It is Draft's
// RequestTx in a transaction of its own and records nothing: a held call
// runs RequestTx in the transaction that appends its approval.requested;
// Request is for tests and tools that hold no transcript.
func (m *Manager) Request(ctx context.Context, in RequestInput) (Approval, bool, error) {
	d, err := m.Draft(in)
	if err != nil {
		return Approval{}, false, err
	}
	switch err := m.cfg.Store.InTx(ctx, d.RequestTx); {
	case errors.Is(err, ErrExists):
		if a, ok := d.Found(); ok {
			a.Impact = in.Impact
			return a, false, nil
		}
		return Approval{}, false, err
	case err != nil:
		return Approval{}, false, err
	}
	d.Announce(ctx)
	return d.Approval(), true, nil
}

// Draft is a new approval for a held call, made (its id too) before it is
// stored, so that the transcript event recording it can be written first
// and the approval stored in that event's transaction (RequestTx, a
// recorder.TxHook):
//
//	d, err := m.Draft(in)
//	append approval.requested{d.Approval()} with hook d.RequestTx
//	  committed          ─▶ d.Announce: the approval, its deliveries and its event exist
//	  ErrExists          ─▶ nothing written; d.Found is the approval to use
//	  any other error    ─▶ nothing written (recorder.ErrOutcomeUnknown: all of it, or nothing)
type Draft struct {
	m     *Manager
	rec   store.Approval
	now   time.Time
	fresh Approval
	n     announcement

	// found is what the last RequestTx found instead (ok false: it
	// stored the draft, or has not run).
	found Approval
	ok    bool
}

// Draft returns the approval Request would create for in, unstored.
func (m *Manager) Draft(in RequestInput) (*Draft, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	now := m.cfg.Clock()
	rules, err := json.Marshal(in.Decision.Matched)
	if err != nil {
		return nil, fmt.Errorf("encoding matched rules: %w", err)
	}
	args := in.Arguments
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	minApprovers := in.Decision.Approvers.Min
	if minApprovers < 1 {
		minApprovers = 1
	}
	rec := store.Approval{
		ID:             uuid.NewString(),
		Digest:         Digest(in.Requester, in.Tool, in.Resource, in.ArgumentsDigest, in.Decision.PolicyVersion),
		CallID:         in.CallID,
		Subject:        in.Requester.Subject,
		Email:          in.Requester.Email,
		Issuer:         in.Requester.Issuer,
		Tool:           in.Tool,
		Resource:       in.Resource,
		Arguments:      args,
		Rule:           in.Decision.Rule,
		Rules:          rules,
		ApproverGroups: in.Decision.Approvers.Groups,
		MinApprovers:   minApprovers,
		PolicyVersion:  in.Decision.PolicyVersion,
		State:          store.ApprovalPending,
		CreatedAt:      now.UTC(),
		ExpiresAt:      now.Add(m.cfg.Expire).UTC(),
	}
	d := &Draft{m: m, rec: rec, now: now, fresh: m.fromRecord(rec, now)}
	d.fresh.Impact = in.Impact
	// The webhooks are told about a new approval through the outbox,
	// written in the approval's own transaction (unused if one exists).
	d.n = m.announce(d.fresh)
	return d, nil
}

// Approval is the approval as it is once RequestTx has stored it.
func (d *Draft) Approval() Approval { return d.fresh }

// RequestTx stores the draft, with its webhook deliveries, in tx: the
// transaction that appends the approval.requested event recording it.
// If the call already has an approval to use (an approved or a pending
// one with the same digest: Request's rules), it writes nothing and
// returns ErrExists, so that the event written for the new approval is
// rolled back; Found then returns that approval. It can run more than
// once (the recorder writes a group commit again without an append that
// failed): each run starts afresh, and Found tells of the last.
func (d *Draft) RequestTx(ctx context.Context, tx *sql.Tx) error {
	d.found, d.ok = Approval{}, false
	got, created, err := d.m.cfg.Store.RequestApprovalTx(ctx, tx, d.rec, d.now, d.n.deliveries...)
	switch {
	case err != nil:
		return fmt.Errorf("requesting approval: %w", err)
	case !created:
		d.found, d.ok = d.m.fromRecord(got, d.now), true
		return fmt.Errorf("approval %s: %w", got.ID, ErrExists)
	}
	return nil
}

// Found returns the approval the last RequestTx found instead of storing
// the draft (ErrExists), as it was read then.
func (d *Draft) Found() (Approval, bool) { return d.found, d.ok }

// Announce wakes the workers of the webhooks told about the approval (and
// reports those whose message could not be built): call it once the
// transaction RequestTx wrote in is committed, and only then.
func (d *Draft) Announce(ctx context.Context) { d.m.announced(ctx, d.fresh, d.n) }

func (in RequestInput) check() error {
	switch {
	case in.Requester.Subject == "":
		return fmt.Errorf("%w: no requester", ErrInvalid)
	case in.Tool == "" || in.Resource == "":
		return fmt.Errorf("%w: no tool or resource", ErrInvalid)
	case len(in.ArgumentsDigest) != sha256.Size:
		return fmt.Errorf("%w: arguments digest must be %d bytes of sha256", ErrInvalid, sha256.Size)
	case in.Decision.Effect != policy.Approve:
		return fmt.Errorf("%w: decision effect is %q, not approve", ErrInvalid, in.Decision.Effect)
	case in.Decision.Approvers == nil || len(in.Decision.Approvers.Groups) == 0:
		return fmt.Errorf("%w: rule %q names no approver groups", ErrInvalid, in.Decision.Rule)
	case len(in.Arguments) > 0 && !json.Valid(in.Arguments):
		return fmt.Errorf("%w: arguments are not JSON", ErrInvalid)
	}
	return nil
}

// Wait waits up to wait (the configured wait if zero) for approval id to
// leave the pending state, and returns it as it then is: a pending
// approval after wait means "still undecided". It notices decisions made
// in this process through the Notifier at once, and decisions made by
// another process on the same store by polling every PollInterval.
// progress, when not nil, is called at once and every ProgressInterval with
// a sentence for the agent. A cancelled ctx returns ctx.Err().
func (m *Manager) Wait(ctx context.Context, id string, wait time.Duration, progress func(msg string)) (Approval, error) {
	if wait <= 0 {
		wait = m.cfg.Wait
	}
	changed, unsubscribe := m.cfg.Notifier.Subscribe(id)
	defer unsubscribe()

	a, err := m.Get(ctx, id)
	if err != nil || a.State != Pending {
		return a, err
	}
	started := time.Now()
	say := func() {
		if progress != nil {
			progress(progressMessage(a, wait-time.Since(started)))
		}
	}
	say()

	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(m.cfg.PollInterval)
	defer poll.Stop()
	tell := time.NewTicker(m.cfg.ProgressInterval)
	defer tell.Stop()
	for {
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-tell.C:
			say()
			continue
		case <-changed:
		case <-poll.C:
		case <-deadline.C:
			return m.Get(ctx, id)
		}
		if a, err = m.Get(ctx, id); err != nil || a.State != Pending {
			return a, err
		}
	}
}

func progressMessage(a Approval, left time.Duration) string {
	msg := fmt.Sprintf("waiting for approval from %s (id %s", strings.Join(a.Approvers.Groups, " or "), a.ID)
	if a.Approvers.Min > 1 {
		msg += fmt.Sprintf(", %d of %d approvals", a.Approvals(), a.Approvers.Min)
	}
	if left > 0 {
		msg += fmt.Sprintf(", %s left", left.Round(time.Second))
	}
	return msg + ")"
}

// Decide records approver's verdict on approval id. The approver must be in
// one of the rule's approver groups and must not be the requester; each
// approver counts once; one deny denies; Approvers.Min distinct approvals
// approve. A decision on an approval that is expired, consumed, denied or
// already approved is refused with ErrExpired, ErrConsumed, ErrDenied or
// ErrApproved. The decision is stored in the transaction that records its
// approval.decided event (Config.OnEvent), or not at all (ErrUnrecorded);
// a refusal is reported to OnEvent as approval.refused.
func (m *Manager) Decide(ctx context.Context, id string, approver policy.Identity, v Verdict, reason, via string) (Approval, error) {
	a, err := m.decide(ctx, id, approver, v, reason, via)
	if err != nil {
		recorded := id
		if !validID(id) {
			recorded = "" // what a caller typed is not the transcript's to keep
		}
		m.emit(ctx, Event{
			Type: EventRefused, ApprovalID: recorded, CallID: a.CallID,
			Subject: approver.Subject, Issuer: approver.Issuer, Tool: a.Tool, Resource: a.Resource,
			Data: map[string]any{"verdict": v, "via": via, "reason": refusalReason(err), "error": refusalText(err)},
		})
		return a, err
	}
	m.cfg.Notifier.Publish(id)
	m.cfg.Logger.Info("approval decided", "approval_id", id, "approver", approver.Subject, "verdict", string(v), "via", via, "state", string(a.State))
	return a, nil
}

func (m *Manager) decide(ctx context.Context, id string, approver policy.Identity, v Verdict, reason, via string) (Approval, error) {
	switch {
	case v != Approve && v != Deny:
		return Approval{}, fmt.Errorf("%w: verdict %q (approve or deny)", ErrInvalid, v)
	case via != ViaWeb && via != ViaAPI && via != ViaCLILocal:
		return Approval{}, fmt.Errorf("%w: via %q (web, api or cli-local)", ErrInvalid, via)
	case approver.Subject == "":
		return Approval{}, fmt.Errorf("%w: no approver", ErrInvalid)
	case len(reason) > maxReason:
		return Approval{}, fmt.Errorf("%w: reason is longer than %d bytes", ErrInvalid, maxReason)
	case !recordable(reason):
		return Approval{}, fmt.Errorf("%w: the reason must be UTF-8 text without NUL characters", ErrInvalid)
	case !recordable(approver.Subject) || !recordable(approver.Issuer) || !recordable(approver.Email):
		return Approval{}, fmt.Errorf("%w: the approver's name must be UTF-8 text without NUL characters", ErrInvalid)
	}
	return m.settle(ctx, id, decision{
		d: store.ApprovalDecision{
			Subject: approver.Subject, Issuer: approver.Issuer, Email: approver.Email,
			Verdict: string(v), Reason: reason, Via: via,
		},
		// Requester and groups never change after creation, and the
		// store refuses a second decision by the same subject and issuer.
		check: func(a Approval) error {
			if a.Requester.Is(approver) {
				return fmt.Errorf("approval %s: %w", id, ErrSelfApproval)
			}
			// A typed name that reads as an earlier approver's is that
			// approver too.
			for _, d := range a.Decisions {
				if d.Approver.Is(approver) {
					return fmt.Errorf("approval %s: %w", id, ErrAlreadyDecided)
				}
			}
			if !inAnyGroup(approver, a.Approvers.Groups) {
				return fmt.Errorf("approval %s: %w (%s)", id, ErrNotApprover, strings.Join(a.Approvers.Groups, ", "))
			}
			return nil
		},
		event: func(a Approval, next State) Event {
			approvals := a.Approvals()
			if v == Approve {
				approvals++
			}
			return Event{
				Type: EventDecided, ApprovalID: id, CallID: a.CallID,
				Subject: approver.Subject, Issuer: approver.Issuer, Tool: a.Tool, Resource: a.Resource,
				Data: map[string]any{
					"verdict": v, "reason": reason, "via": via, "state": next,
					"approvals": approvals, "min": a.Approvers.Min, "requester": a.Requester.Subject,
					"created_at": a.CreatedAt,
				},
			}
		},
	})
}

// decision is one decision for settle to store: what it says (its At is
// set when it is stored), what must hold of the approval for it to be made
// (check), and the event that records it, written from the approval as
// read and the state the decision moves it to.
type decision struct {
	d     store.ApprovalDecision
	check func(a Approval) error
	event func(a Approval, next State) Event
}

// recordable reports whether s can be stored in the transcript as it is
// (recorder.Check refuses NUL and invalid UTF-8): a decision is never
// stored with an event that says something else.
func recordable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// validID reports whether id is an approval id as Request makes them (a
// UUID in its canonical form). Anything else names no approval, and is
// neither looked up nor echoed: it is the caller's text, of any length.
func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

// errNoSuchID is the answer to an id that is not one (validID).
var errNoSuchID = fmt.Errorf("%w: approval ids are UUIDs", ErrNotFound)

// settleAttempts bounds how often settle reads the approval again when
// another decision lands between its read and its write (one made on
// another replica: this process makes one at a time, settling), beyond
// the approval's MinApprovers. Each time a decision is lost so, another
// one has landed, and no more than MinApprovers land on an approval
// while it is pending (each approver decides once; the last approval
// needed, or a denial, settles it): an approver who keeps losing to the
// others is told the approval's outcome, not ErrChanged, unless the
// others keep landing for longer than settleBudget (an approval needing
// thousands of approvals, a crowd deciding it).
const (
	settleAttempts = 5
	settleBudget   = time.Second
)

// settle stores a decision on pending approval id in the transaction that
// appends its event (Event.Write, run by Config.OnEvent): both are
// committed or neither. The event is written from the approval as read;
// the store refuses the decision (store.ErrApprovalChanged) if another
// one landed since, and settle then reads it again and starts over.
func (m *Manager) settle(ctx context.Context, id string, dc decision) (Approval, error) {
	if !validID(id) {
		return Approval{}, errNoSuchID
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	stripe := m.settling[h.Sum32()%uint32(len(m.settling))]
	select {
	case stripe <- struct{}{}:
	case <-ctx.Done():
		return Approval{}, fmt.Errorf("approval %s: waiting to store the decision: %w", id, ctx.Err())
	}
	defer func() { <-stripe }()
	started := time.Now()
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			// Another replica's decision landed first: let it finish.
			time.Sleep(time.Duration(min(attempt, 5)) * time.Duration(1+rand.IntN(10)) * time.Millisecond)
		}
		rec, err := m.cfg.Store.Approval(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return Approval{}, fmt.Errorf("approval %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return Approval{}, fmt.Errorf("reading approval %s: %w", id, err)
		}
		now := m.cfg.Clock()
		a := m.fromRecord(rec, now)
		if err := dc.check(a); err != nil {
			return a, err
		}
		if a.State != Pending {
			return a, fmt.Errorf("approval %s: %w", id, stateError(a.State))
		}
		d := dc.d
		d.At = now
		ev := dc.event(a, State(store.NextState(rec, d)))
		var (
			got store.Approval
			ran bool
		)
		ev.Write = func(ctx context.Context, tx *sql.Tx) error {
			ran = true
			var err error
			got, err = m.cfg.Store.DecideApprovalTx(ctx, tx, id, d, now, len(rec.Decisions))
			return err
		}
		err = m.cfg.OnEvent(context.WithoutCancel(ctx), ev)
		if err == nil && !ran {
			err = errors.New("the transcript did not run the decision's write")
		}
		if err == nil {
			// A transcript that said yes without committing the write
			// (Config.OnEvent breaking its contract) is caught here, at the
			// cost of one read per decision.
			if cur, rerr := m.cfg.Store.Approval(context.WithoutCancel(ctx), id); rerr == nil && !holds(cur, d) {
				err = errors.New("the transcript reported the decision recorded, but the store does not hold it")
			}
		}
		switch {
		case err == nil:
			return m.fromRecord(got, now), nil
		case errors.Is(err, store.ErrApprovalChanged) && attempt < rec.MinApprovers+settleAttempts &&
			time.Since(started) < settleBudget && ctx.Err() == nil:
			continue
		case errors.Is(err, store.ErrApprovalChanged):
			return m.fromRecord(got, now), fmt.Errorf("approval %s: %w", id, ErrChanged)
		case errors.Is(err, store.ErrApprovalState):
			cur := m.fromRecord(got, now)
			return cur, fmt.Errorf("approval %s: %w", id, stateError(cur.State))
		case errors.Is(err, store.ErrDuplicateDecision):
			return m.fromRecord(got, now), fmt.Errorf("approval %s: %w", id, ErrAlreadyDecided)
		case errors.Is(err, store.ErrNotFound):
			return Approval{}, fmt.Errorf("approval %s: %w", id, ErrNotFound)
		default:
			m.cfg.Logger.Error("storing an approval decision with its event failed", "approval_id", id, "type", ev.Type, "error", err)
			// The commit may have been made although the append failed:
			// the store says. A read that does not find the decision
			// settles it only when the recorder said the commit was not
			// made; one it could not tell of (ErrOutcomeUnknown) may still
			// be being made.
			cur, rerr := m.cfg.Store.Approval(context.WithoutCancel(ctx), id)
			switch {
			case rerr == nil && holds(cur, d):
				return m.fromRecord(cur, now), nil
			case rerr != nil:
				m.cfg.Logger.Error("reading back an approval decision failed", "approval_id", id, "error", rerr)
				return a, fmt.Errorf("approval %s: %w", id, ErrUncertain)
			case errors.Is(err, recorder.ErrOutcomeUnknown):
				return a, fmt.Errorf("approval %s: %w", id, ErrUncertain)
			}
			return a, fmt.Errorf("approval %s: %w", id, ErrUnrecorded)
		}
	}
}

// holds reports whether approval a holds decision d: only d's own commit
// writes it (one decision per approver), in its event's transaction.
func holds(a store.Approval, d store.ApprovalDecision) bool {
	for _, got := range a.Decisions {
		if got.Subject == d.Subject && got.Issuer == d.Issuer && got.Email == d.Email && got.Verdict == d.Verdict &&
			got.Via == d.Via && got.Reason == d.Reason && got.At.Equal(d.At) {
			return true
		}
	}
	return false
}

// stateError is why an approval in state s cannot be decided or consumed.
func stateError(s State) error {
	switch s {
	case Expired:
		return ErrExpired
	case Consumed:
		return ErrConsumed
	case Denied:
		return ErrDenied
	case Approved:
		return ErrApproved
	default:
		return ErrNotApproved
	}
}

// refusalText is the error recorded with approval.refused: a sentinel's
// sentence with its detail, never a store's own error (which can name its
// user, database and socket; that goes to the log).
func refusalText(err error) string {
	if refusalReason(err) == "error" {
		return "the approval could not be read or stored (the server's log says why)"
	}
	return err.Error()
}

// refusalReason is the short reason recorded with approval.refused.
func refusalReason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrInvalid, "invalid"},
		{ErrNotFound, "not_found"},
		{ErrSelfApproval, "self_approval"},
		{ErrNotApprover, "not_approver"},
		{ErrAlreadyDecided, "already_decided"},
		{ErrExpired, "expired"},
		{ErrConsumed, "consumed"},
		{ErrDenied, "denied"},
		{ErrApproved, "already_approved"},
		{ErrUnrecorded, "unrecorded"},
		{ErrChanged, "changed"},
		{ErrUncertain, "uncertain"},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "error"
}

// Consume marks approval id as used by callID, in a store transaction of
// its own. It succeeds exactly once for an approved, unexpired approval;
// otherwise it returns ErrConsumed, ErrExpired, ErrDenied, ErrNotApproved
// or ErrNotFound, and the call must not run. It records nothing: a call
// spends its approval through ConsumeTx, in the transaction that appends
// its approval.consumed; Consume is for tests and tools that hold no
// transcript.
func (m *Manager) Consume(ctx context.Context, id, callID string) error {
	return m.cfg.Store.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return m.ConsumeTx(ctx, tx, id, callID)
	})
}

// ConsumeTx is Consume in tx: the transaction that appends the
// approval.consumed event recording the use (a recorder.TxHook), so an
// approval is never spent without its event.
func (m *Manager) ConsumeTx(ctx context.Context, tx *sql.Tx, id, callID string) error {
	now := m.cfg.Clock()
	rec, err := m.cfg.Store.ConsumeApprovalTx(ctx, tx, id, callID, now)
	switch {
	case errors.Is(err, store.ErrApprovalState):
		return fmt.Errorf("approval %s: %w", id, stateError(m.fromRecord(rec, now).State))
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("approval %s: %w", id, ErrNotFound)
	case err != nil:
		return fmt.Errorf("consuming approval %s: %w", id, err)
	}
	return nil
}

// Get returns approval id, or ErrNotFound. It does not check who asks.
func (m *Manager) Get(ctx context.Context, id string) (Approval, error) {
	if !validID(id) {
		return Approval{}, errNoSuchID
	}
	rec, err := m.cfg.Store.Approval(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Approval{}, fmt.Errorf("approval %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Approval{}, fmt.Errorf("reading approval %s: %w", id, err)
	}
	return m.fromRecord(rec, m.cfg.Clock()), nil
}

// Status returns approval id to the requester or an approver, for the
// approval_status tool; anyone else gets ErrForbidden.
func (m *Manager) Status(ctx context.Context, id string, who policy.Identity) (Approval, error) {
	a, err := m.Get(ctx, id)
	if err != nil {
		return Approval{}, err
	}
	if !a.MaySee(who) {
		return Approval{}, fmt.Errorf("approval %s: %w", id, ErrForbidden)
	}
	return a, nil
}

// ListFilter selects approvals for List.
type ListFilter struct {
	// Viewer, when set, restricts the list to approvals the viewer
	// requested or may decide (by group). Nil lists everything (local CLI).
	Viewer *policy.Identity
	// State selects one state; empty selects all.
	State State
	Limit int // default 100
}

// List returns approvals, pending ones first, then the most recent.
func (m *Manager) List(ctx context.Context, f ListFilter) ([]Approval, error) {
	sf := store.ApprovalFilter{State: string(f.State), Limit: f.Limit}
	if f.Viewer != nil {
		if f.Viewer.Subject == "" {
			return nil, fmt.Errorf("%w: viewer without a subject", ErrInvalid)
		}
		sf.Subject, sf.Issuer, sf.Groups = f.Viewer.Subject, f.Viewer.Issuer, f.Viewer.Groups
	}
	now := m.cfg.Clock()
	recs, err := m.cfg.Store.ListApprovals(ctx, sf, now)
	if err != nil {
		return nil, fmt.Errorf("listing approvals: %w", err)
	}
	out := make([]Approval, 0, len(recs))
	for _, r := range recs {
		out = append(out, m.fromRecord(r, now))
	}
	return out, nil
}

// PageURL is the approval page of id, or "" without a public URL.
func (m *Manager) PageURL(id string) string {
	if m.origin == "" {
		return ""
	}
	return m.origin + "/ui/approvals/" + url.PathEscape(id)
}

func (m *Manager) apiURL(id string) string {
	if m.origin == "" {
		return ""
	}
	return m.origin + "/api/approvals/" + url.PathEscape(id)
}

func (m *Manager) fromRecord(r store.Approval, now time.Time) Approval {
	if r.ID == "" {
		return Approval{}
	}
	a := Approval{
		ID:            r.ID,
		Digest:        r.Digest,
		CallID:        r.CallID,
		Requester:     Principal{Subject: r.Subject, Email: r.Email, Issuer: r.Issuer},
		Tool:          r.Tool,
		Resource:      r.Resource,
		Arguments:     json.RawMessage(r.Arguments),
		Rule:          r.Rule,
		Approvers:     policy.Approvers{Groups: r.ApproverGroups, Min: r.MinApprovers},
		PolicyVersion: r.PolicyVersion,
		State:         State(r.StateAt(now)),
		CreatedAt:     r.CreatedAt,
		ExpiresAt:     r.ExpiresAt,
		DecidedAt:     r.DecidedAt,
		ConsumedAt:    r.ConsumedAt,
		ConsumedBy:    r.ConsumedBy,
		Decisions:     make([]Decision, 0, len(r.Decisions)),
		URL:           m.PageURL(r.ID),
	}
	if err := json.Unmarshal(r.Rules, &a.Rules); err != nil {
		m.cfg.Logger.Warn("approval has unreadable rules", "approval_id", r.ID, "error", err)
	}
	for _, d := range r.Decisions {
		a.Decisions = append(a.Decisions, Decision{
			Approver: Principal{Subject: d.Subject, Email: d.Email, Issuer: d.Issuer},
			Verdict:  Verdict(d.Verdict), Reason: d.Reason, Via: d.Via, At: d.At,
		})
	}
	return a
}

// emit reports an event; the report outlives the request.
func (m *Manager) emit(ctx context.Context, ev Event) {
	if err := m.cfg.OnEvent(context.WithoutCancel(ctx), ev); err != nil {
		m.cfg.Logger.Error("recording approval event failed", "type", ev.Type, "approval_id", ev.ApprovalID, "error", err)
	}
}
