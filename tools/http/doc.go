// Package httpkind serves resources of kind "http" and the tool
// http_request: one HTTP request to one configured service (an internal
// API, an admin endpoint, a SaaS API), with a credential minted for the
// lease that the agent never sees.
//
// The package is named httpkind, not http, so that its own files can use
// net/http under its usual name; it lives in tools/http as DESIGN.md lays
// out. It is the first kind built on the contract alone: its settings are
// read with tools.ResourceSpec.DecodeSettings and tools.Grant.DecodeSettings
// (declared with tools.RegisterSettings), its facts are registered with
// policy.RegisterFacts("http", HTTP{}) and returned with policy.FactsOf, and
// its output is the generic tools.Output the broker already masks. Nothing
// outside this package knows about HTTP but the list of kinds in
// cmd/airlock.
//
// For each call the broker asks, in order:
//
//	Decode   {resource, method, path, query?, headers?, body?} → *RequestArgs
//	         path: relative, no scheme or //host, no ?/#, no backslash, no
//	           control character, no ";" (path parameter), no empty, "." or
//	           ".." segment at any depth of percent-decoding (nor once NFKC-
//	           normalised), no encoded / or \, decoded segments UTF-8
//	         headers: RFC 9110 token names without "_", values without
//	           CR/LF/NUL; never Host, Authorization, Cookie, Proxy-*,
//	           framing, Content-Encoding, Range, Forwarded, X-Forwarded-*,
//	           path-rewriting and client-address headers, method overrides
//	         query: no method override (_method, _HttpMethod, ...)
//	         body: object/list → JSON; string → as is, parsed when its
//	           Content-Type is JSON; none on GET/HEAD/OPTIONS; JSON without
//	           keys equal under case folding, numbers exact as float64, no
//	           top-level _method (jsoncheck.go); Content-Type one media type,
//	           UTF-8
//	Facts    http.method, path, segments, query, header_names, headers, body,
//	         content_type, read_only — from the arguments only
//	Mint     oauth2_client_credentials: token endpoint ← client id + secret
//	           (by reference) + grant scopes/audience; token cached for the
//	           lease, refetched if it expires first
//	         bearer | header: secret read from the grant's or resource's
//	           *_env / *_file reference
//	Execute  methods / path_prefixes / resource headers / max_request_bytes
//	         → resolve the host ONCE; every address must be public or named
//	           by allow_private (a base_url IP literal names itself) → pin
//	         → transport: DialContext dials only pinned addresses of the
//	           resource's host:port; Proxy nil (HTTP_PROXY ignored); TLS from
//	           ca_file / cert_file+key_file; redirects never followed (a 3xx
//	           comes back with a notice naming the path to ask for)
//	         → body read up to MaxBytes+1, the rest never read; the
//	           credential sent removed from body, headers, notices and
//	           errors (redact.go)
//	         → JSON (by type or by content: JSON served as text, NDJSON,
//	           JSONP) → Objects[0] (masked field by field by the profile's
//	           fields: paths, then detectors); text → Streams.Stdout
//	           (detectors); binary by content type or sniffing → no body;
//	           JSON past the cap, or served as JSON and not parsing → no
//	           body (a cut document cannot be masked by field)
//	Render   {status, headers, content_type, body | text, body_bytes,
//	         truncated, notice} and "HTTP 200 OK / headers / body" text
//	Revoke   each token of the lease at revocation_url (RFC 7009) when set;
//	         otherwise tokens expire by themselves. Orphans is nil.
//
// RFC 8693 token exchange of the caller's own token is not implemented.
package httpkind
