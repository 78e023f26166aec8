package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// TokenEnv names the environment variable `airlock stdio` reads its bearer
// token from when no --token-file is given.
const TokenEnv = "AIRLOCK_TOKEN"

// StdioToken returns the bearer token for `airlock stdio`: the content of
// tokenFile when set (read again on every call, so a token refreshed into
// the file is picked up), else $AIRLOCK_TOKEN. ErrNoToken when neither holds one.
func StdioToken(tokenFile string) (string, error) {
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading --token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("--token-file %s: %w", tokenFile, ErrNoToken)
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(os.Getenv(TokenEnv)); tok != "" {
		return tok, nil
	}
	return "", fmt.Errorf("set %s or --token-file: %w", TokenEnv, ErrNoToken)
}

// stdioReadyWait bounds how long AuthenticateStdio waits for discovery: a
// stdio server is started by its client and should fail fast and clearly.
const stdioReadyWait = 10 * time.Second

// AuthenticateStdio establishes the identity of the caller of `airlock
// stdio` from StdioToken(tokenFile), verified exactly as the HTTP middleware
// verifies bearer tokens (the verifier must have been started). Refusals
// are logged with their reason and the token's fingerprint, and returned as
// errors that never contain the token. Call it per request when the token
// may be refreshed underneath (a token file), or once at start-up.
func (v *Verifier) AuthenticateStdio(ctx context.Context, tokenFile string) (policy.Identity, error) {
	raw, err := StdioToken(tokenFile)
	if err != nil {
		v.logger.Warn("stdio identity refused", keyReason, "no_token", keyError, err)
		return policy.Identity{}, err
	}
	if ok, _ := v.Ready(); !ok {
		wctx, cancel := context.WithTimeout(ctx, stdioReadyWait)
		_ = v.WaitReady(wctx)
		cancel()
	}
	id, err := v.Verify(ctx, raw)
	if err != nil {
		attrs := []any{keyReason, ReasonOf(err), keyTokenFP, Fingerprint(raw), keyError, err}
		var se *ScopeError
		if errors.As(err, &se) {
			attrs = append(attrs, keyMissing, se.Missing)
		}
		v.logger.Log(ctx, slog.LevelWarn, "stdio identity refused", attrs...)
		return policy.Identity{}, err
	}
	return id, nil
}
