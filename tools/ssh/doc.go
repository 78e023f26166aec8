// Package ssh serves resources of kind "ssh" and the tool run_ssh: one shell
// command on one host, run with a user certificate minted for that call.
//
// The agent never holds a key. For each call the broker asks this package,
// in order:
//
//	Decode   {resource, command, timeout_s?, stdin?} → *RunArgs
//	Facts    command → policy.Shell, from mvdan.cc/sh's bash parser:
//	         every simple command through pipes, lists, subshells and
//	         substitutions, plus what wrappers run (sudo, env, timeout,
//	         xargs, find -exec) and the scripts of sh -c, su -c and eval
//	Mint     fresh ed25519 key ─┐
//	         user certificate ◄─┘ signed by the resource's CA:
//	           principals = grant.principals   KeyId = call id
//	           ValidAfter = now-1m             ValidBefore = lease expiry
//	           extensions: permit-pty only if the grant says so
//	           critical options: source-address if configured
//	         (kept in memory only; the lease records serial and expiry)
//	Execute  take a session slot (max_sessions per host)
//	           → TCP dial → handshake: host key verified against host_key,
//	             host_ca or known_hosts_file (never skippable)
//	           → publickey auth with the certificate as the grant's first
//	             principal → "exec" request, no PTY, no agent, no forwarding
//	           → stdout/stderr kept up to MaxBytes each, the rest discarded
//	           → exit status; on timeout: signal KILL, close the connection
//	Render   {exit_code, stdout, stderr, truncated, duration_ms, notice}
//
// The host's sshd verifies the certificate (TrustedUserCAKeys) and logs its
// key id, so its auth log names the Airlock call. Nothing is revoked at the
// end of a lease: the certificate expires by itself.
package ssh
