// Package approval holds calls whose policy decision is `approve` until
// humans decide, and tells them about it through signed webhooks.
//
//	broker (effect approve)
//	  │ Open(in) ─────────────▶ store: approved + unexpired with this digest? ─ yes ─▶ Consume(id, call) ▶ execute
//	  │                         pending + unexpired with this digest?         ─ yes ─▶ Wait
//	  │ Draft(in).RequestTx ──▶ else insert pending, in the transaction that records
//	  │                         approval.requested ─▶ webhooks (async, signed, retried)
//	  │ Wait(id, wait, progress) ◀── Notifier (this process) / store polling (other processes)
//	  │   approved ─▶ Consume(id, call) exactly once ─▶ execute
//	  │   denied | expired ─▶ refuse
//	  │   still pending after wait ─▶ "pending" result with the id; the agent
//	  │                              calls again later with the same arguments
//	  ▼
//	humans: web page, JSON API (APIHandler), CLI (local mode on the same store file)
//	  └─ Decide(id, approver, approve|deny, reason, via)
//	       approver ∈ rule's groups, ≠ requester (subject and issuer),
//	       counts once; one deny denies; Approvers.Min distinct approvals approve
//
// An approval is bound to a digest of (requester subject and issuer, tool,
// resource, sha256 of the unmasked canonical arguments, policy version), so
// a call with other arguments, by someone else, or under another policy
// needs its own approval. Expiry is computed on read: a pending or approved
// approval past ExpiresAt is expired and can be neither decided nor used.
//
// The broker records the call's own steps (approval requested, consumed);
// Config.OnEvent receives what happens outside a call: decisions, refused
// decision attempts and webhook outcomes. Nothing here executes anything:
// an approval no webhook reached still needs a decision.
//
// Webhook payloads and signatures are defined in the leaf package
// broker/approval/webhook, which receivers can import on its own.
package approval
