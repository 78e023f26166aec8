// Package kubernetes serves resources of kind "kubernetes" and the tools
// kubectl_get and kubectl_describe (read any kind a cluster serves, custom
// resources included), kubectl_logs and kubectl_events (logs.go,
// events.go), and the writes kubectl_scale, kubectl_rollout_restart,
// kubectl_delete (writes.go) and kubectl_apply (apply.go), each with a
// credential minted for the lease. The writes act on one object of a kind
// the static table knows, in a namespace (kubectl_delete and kubectl_apply
// also on a cluster-wide kind the resource's cluster_scoped_writes lists:
// writes.go), and are tools.Previewers: held
// for approval, they show what they would do, found under the grant's own
// privileges by reads and server-side dry runs (preview.go). The flow
// below is kubectl_get's; each other file opens with its own.
//
// The agent never holds a token. For each call the broker asks, in order:
//
//	Decode   {resource, kind, namespace?, name?, label_selector?, field_selector?,
//	         all_namespaces?, output?, limit?, continue?} → *GetArgs
//	         (describe: {resource, kind, namespace?, name} → *DescribeArgs);
//	         selectors are parsed as the API server parses them
//	Facts    no network: the kind is resolved with a static table of built-in
//	         kinds (pods, po, Pod, deploy, deployments.apps, secrets, ...) into
//	         k8s.group/version/resource/kind; any other text is reported as
//	         given, lower-cased (widgets.example.com → resource widgets, group
//	         example.com). verb is list, or get with a name; namespace is the
//	         one the request runs in ("default" when left out, empty for
//	         cluster-wide kinds and all_namespaces)
//	Mint     service_account grant: TokenRequest for NS/NAME with the broker's
//	           own credential, expirationSeconds = ttl (≥ 600 s); the token
//	           is the lease's only authentication (Handle NS/NAME#<lease>)
//	         impersonate grant: the broker's credential plus Impersonate-User
//	           and Impersonate-Group expanded from the caller
//	           ("oidc:{{identity.subject}}" → "oidc:alice"); the cluster's
//	           RBAC decides as that user
//	Execute  resolve the kind through aggregated discovery (/api, /apis;
//	           cached per resource for 10 minutes, refreshed once for a name
//	           it does not know, then an error with close matches)
//	         → refuse (tools.ErrRefused) if discovery names another
//	           group/resource than the facts policy decided on: a table kind
//	           must resolve to itself, other text must not reach a table kind
//	           nor another group than it names — a CRD called "pods" cannot
//	           borrow policy written for pods, and no alias reaches Secrets
//	           unseen
//	         → GET with the lease's credential: summary asks for the API
//	           server's Table (the columns kubectl prints); yaml/json for the
//	           objects, managedFields removed; limit (default 50, at most the
//	           policy's max_rows) and continue for paging; the byte cap cuts
//	           a page and asks again with the kept count for a continue
//	           token that resumes right after the last object shown
//	         → describe: the object plus its last 20 events (involvedObject.uid)
//	         → errors: 403 ErrForbidden (tools.ErrRefused) with the cluster's
//	           message; 404 says whether the namespace or the object is
//	           missing; connection refused/reset/timeout →
//	           tools.ErrBackendUnavailable
//	Render   masked Output → Result {kind, namespace, table | items, events,
//	         truncated, continue, notice} and kubectl-like text (aligned
//	         table, YAML, JSON, describe with an Events table)
//
// Masking is the broker's: objects leave Execute as decoded JSON (kind set
// on every item) so masking.Profile.MaskObject masks Secret data and
// stringData, the last-applied-configuration annotation and secret-looking
// env values whatever the profile, and runs the detectors on everything
// else (ConfigMap data, env values). Render reads only the masked Output.
//
// Revoke does nothing: a TokenRequest token cannot be revoked alone, it
// expires at the lease's ttl; an impersonation creates nothing on the
// cluster. Orphans is nil for the same reason.
package kubernetes
