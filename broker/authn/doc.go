// Package authn establishes who is calling airlock: it verifies OAuth 2.0
// access tokens (JWTs) from one OpenID Connect provider and turns them into
// a policy.Identity. Nothing downstream sees the token itself.
//
// Over Streamable HTTP, airlock is an OAuth 2.1 resource server as the MCP
// authorization specification (2025-11-25) describes:
//
//	MCP client                     airlock (ResourceServer)               provider (issuer)
//	    |  POST /mcp (no token)          |                                      |
//	    |------------------------------->|                                      |
//	    |  401 WWW-Authenticate: Bearer resource_metadata=".../.well-known/    |
//	    |      oauth-protected-resource/mcp"                                    |
//	    |<-------------------------------|                                      |
//	    |  GET /.well-known/oauth-protected-resource/mcp  (RFC 9728)           |
//	    |------------------------------->|                                      |
//	    |  {resource, authorization_servers: [issuer], scopes_supported, ...}  |
//	    |<-------------------------------|                                      |
//	    |  authorization code + PKCE, resource=<airlock /mcp URL> (RFC 8707)   |
//	    |---------------------------------------------------------------------->|
//	    |  access token: aud=<airlock /mcp URL>, groups, scope                 |
//	    |<----------------------------------------------------------------------|
//	    |  POST /mcp  Authorization: Bearer <token>                            |
//	    |------------------------------->|  Verifier.Verify:                    |
//	    |                                |   header: alg in allow-list (never   |
//	    |                                |     none, never HS*)                 |
//	    |                                |   signature: go-oidc RemoteKeySet -->| jwks_uri (cached;
//	    |                                |   iss, aud, exp/nbf/iat (skew)       |  refetched on an
//	    |                                |   subject, email, groups claims      |  unknown kid)
//	    |                                |   required scopes  -> 403 if missing |
//	    |                                |  session: Mcp-Session-Id bound to    |
//	    |                                |   the subject that opened it         |
//	    |                                |  context <- policy.Identity          |
//	    |  MCP response                  |  -> broker                           |
//	    |<-------------------------------|                                      |
//
// Refusals: no token, a malformed Authorization header or an invalid token
// get 401 with a Bearer challenge naming the metadata URL; a token in the
// query string gets 400; a missing scope or someone else's session gets 403;
// while the provider has never been reached, 503 with "identity provider …
// is unreachable; calls are refused until it answers". Every refusal is
// logged once with its reason and a SHA-256 fingerprint of the token (never
// the token).
//
// Over stdio the token comes from AIRLOCK_TOKEN or --token-file and is
// verified the same way (Verifier.AuthenticateStdio). `airlock login` gets
// one (Login: device authorization grant for people, client credentials for
// machines) and caches it in the user's config directory with mode 0600
// (CachedToken refreshes it before it expires).
//
// Discovery happens in the background (Verifier.Start), retried with
// backoff, so that airlock starts even when its provider is down and says so
// (Verifier.Ready).
package authn
