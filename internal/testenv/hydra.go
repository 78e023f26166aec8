package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The Hydra binary is built from the tools module internal/tools/hydra (its own
// go.mod, so Hydra never enters airlock's module graph) and cached under
// TestBinDir()/hydra-<first 16 hex of sha256(internal/tools/hydra/go.sum)>: a new
// go.sum means a new binary, an unchanged one is never rebuilt.
//
// Hydra(t) looks for the binary in this order:
//  1. $AIRLOCK_HYDRA_BIN, when set (a missing file there is an error);
//  2. the cache path above;
//  3. it builds it there with internal/tools/hydra/build.sh (about 90 s on two
//     cores, once per go.sum; a file lock makes parallel test binaries wait for
//     one build). When the build fails (no gcc, no module proxy) the test is
//     Unavailable with the command to run.
const hydraBinEnv = "AIRLOCK_HYDRA_BIN"

// HydraInstance is a running Ory Hydra v2 (a certified OAuth 2.0 / OpenID
// Connect provider) on loopback with an in-memory database. Access tokens are
// JWTs signed with RS256. Claims given to CreateClient appear at the top level
// of that client's access tokens (set by a token hook served by the test).
type HydraInstance struct {
	issuer   string
	adminURL string
	hook     *tokenHook
}

// HydraOptions tunes Hydra. The zero value is fine for most tests.
type HydraOptions struct {
	// PublicPort fixes the public (issuer) port, for tests that start a
	// verifier before the provider. Zero picks a free port.
	PublicPort int
	// AccessTokenTTL is the access token lifespan; zero means Hydra's default (1h).
	AccessTokenTTL time.Duration
	// LoginURL and ConsentURL are the login and consent app of the
	// authorization code flow (Hydra's urls.login and urls.consent), for
	// tests that log a browser in; a test serves them itself, accepting the
	// challenges through AdminURL.
	LoginURL, ConsentURL string
}

// HydraClient is an OAuth 2.0 client registered with Hydra.
type HydraClient struct {
	ID       string
	Secret   string
	Audience []string
	Scopes   []string
}

// ClientSpec describes a client for CreateClientSpec.
type ClientSpec struct {
	// Audience lists the audiences the client may request (RFC 8707 resource
	// URLs, such as airlock's public /mcp URL).
	Audience []string
	// Scopes the client may request.
	Scopes []string
	// Claims are added at the top level of the client's access tokens. Any JSON
	// value is allowed, so tests can produce malformed claims too.
	Claims map[string]any
}

// hydraClaimNames are the custom claims Hydra copies to the top level of JWT
// access tokens (oauth2.allowed_top_level_claims). Others stay out of the token.
var hydraClaimNames = []string{"groups", "email", "name", "roles", "realm_access", "tenant"}

// Hydra starts Hydra for the test with default options.
func Hydra(t testing.TB) *HydraInstance {
	t.Helper()
	return HydraWith(t, HydraOptions{})
}

// HydraWith starts Hydra with opts, waits until it is ready and its signing
// keys exist, and stops it when the test ends.
func HydraWith(t testing.TB, opts HydraOptions) *HydraInstance {
	t.Helper()
	bin := hydraBinary(t)

	hook := newTokenHook()
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)

	publicPort := opts.PublicPort
	if publicPort == 0 {
		publicPort = FreePort(t)
	}
	adminPort := FreePort(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d/", publicPort)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adminPort)

	dir := t.TempDir()
	cfg := fmt.Sprintf(`oauth2:
  allowed_top_level_claims: [%s]
  mirror_top_level_claims: false
  token_hook: %s/token-hook
`, strings.Join(hydraClaimNames, ", "), hookSrv.URL)
	cfgPath := filepath.Join(dir, "hydra.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatalf("writing hydra config: %v", err)
	}

	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	env := append(os.Environ(),
		"DSN=memory",
		"URLS_SELF_ISSUER="+issuer,
		"STRATEGIES_ACCESS_TOKEN=jwt",
		"SECRETS_SYSTEM="+hex.EncodeToString(secret),
		"SERVE_PUBLIC_HOST=127.0.0.1",
		"SERVE_PUBLIC_PORT="+strconv.Itoa(publicPort),
		"SERVE_ADMIN_HOST=127.0.0.1",
		"SERVE_ADMIN_PORT="+strconv.Itoa(adminPort),
		"LOG_LEVEL=warn",
	)
	if opts.LoginURL != "" {
		env = append(env, "URLS_LOGIN="+opts.LoginURL)
	}
	if opts.ConsentURL != "" {
		env = append(env, "URLS_CONSENT="+opts.ConsentURL)
	}
	if opts.AccessTokenTTL > 0 {
		env = append(env, "TTL_ACCESS_TOKEN="+opts.AccessTokenTTL.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", "all", "--dev", "--sqa-opt-out", "--config", cfgPath)
	cmd.Env = env
	logFile, err := os.Create(filepath.Join(dir, "hydra.log"))
	if err != nil {
		cancel()
		t.Fatalf("creating hydra log: %v", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		logFile.Close()
		Unavailable(t, "Ory Hydra", hydraBuildHint(), err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		logFile.Close()
	})

	h := &HydraInstance{issuer: issuer, adminURL: adminURL, hook: hook}
	if err := h.waitReady(exited, 30*time.Second); err != nil {
		log, _ := os.ReadFile(logFile.Name())
		t.Fatalf("hydra did not become ready: %v\n%s", err, log)
	}
	h.warmUp(t)
	return h
}

// Issuer is the issuer URL, trailing slash included, exactly as it appears in
// tokens and discovery.
func (h *HydraInstance) Issuer() string { return h.issuer }

// AdminURL is the admin API's base URL.
func (h *HydraInstance) AdminURL() string { return h.adminURL }

// JWKSURL is the public key set URL.
func (h *HydraInstance) JWKSURL() string { return h.issuer + ".well-known/jwks.json" }

// TokenURL is the token endpoint.
func (h *HydraInstance) TokenURL() string { return h.issuer + "oauth2/token" }

// CreateClient registers a client_credentials client allowed audience and
// scopes whose access tokens carry groups (a "groups" array claim, present
// even when empty).
func (h *HydraInstance) CreateClient(t testing.TB, audience string, scopes []string, groups ...string) HydraClient {
	t.Helper()
	if groups == nil {
		groups = []string{}
	}
	return h.CreateClientSpec(t, ClientSpec{
		Audience: []string{audience},
		Scopes:   scopes,
		Claims:   map[string]any{"groups": groups},
	})
}

// CreateClientSpec registers a client_credentials client.
func (h *HydraInstance) CreateClientSpec(t testing.TB, spec ClientSpec) HydraClient {
	t.Helper()
	body := map[string]any{
		"grant_types":                []string{"client_credentials"},
		"audience":                   spec.Audience,
		"scope":                      strings.Join(spec.Scopes, " "),
		"token_endpoint_auth_method": "client_secret_basic",
		"access_token_strategy":      "jwt",
	}
	var out struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := h.admin(http.MethodPost, "/admin/clients", body, http.StatusCreated, &out); err != nil {
		t.Fatalf("creating hydra client: %v", err)
	}
	if spec.Claims != nil {
		h.hook.set(out.ID, spec.Claims)
	}
	return HydraClient{ID: out.ID, Secret: out.Secret, Audience: spec.Audience, Scopes: spec.Scopes}
}

// Token obtains an access token (a JWT) for client with the client
// credentials grant, for the given scopes and the client's audience.
func (h *HydraInstance) Token(t testing.TB, c HydraClient, scopes ...string) string {
	t.Helper()
	tok, err := h.TokenFor(c, c.Audience, scopes)
	if err != nil {
		t.Fatalf("getting a token from hydra: %v", err)
	}
	return tok
}

// TokenFor is Token with an explicit audience and an error instead of a
// failed test, for tests that expect Hydra to refuse.
func (h *HydraInstance) TokenFor(c HydraClient, audience, scopes []string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	if len(audience) > 0 {
		form.Set("audience", strings.Join(audience, " "))
	}
	req, err := http.NewRequest(http.MethodPost, h.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token endpoint: %s: %s", resp.Status, raw)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("decoding token response: %w", err)
	}
	return out.AccessToken, nil
}

// RotateKeys adds a new access-token signing key; Hydra signs new tokens with
// it and publishes both in its JWKS.
func (h *HydraInstance) RotateKeys(t testing.TB) {
	t.Helper()
	body := map[string]any{"alg": "RS256", "use": "sig", "kid": fmt.Sprintf("rotated-%d", time.Now().UnixNano())}
	if err := h.admin(http.MethodPost, "/admin/keys/hydra.jwt.access-token", body, http.StatusCreated, nil); err != nil {
		t.Fatalf("rotating hydra keys: %v", err)
	}
}

func (h *HydraInstance) admin(method, path string, body any, want int, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, h.adminURL+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, respBody)
	}
	if out != nil {
		return json.Unmarshal(respBody, out)
	}
	return nil
}

func (h *HydraInstance) waitReady(exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errors.New("hydra exited")
		default:
		}
		resp, err := http.Get(h.adminURL + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if resp, err := http.Get(h.issuer + ".well-known/openid-configuration"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s (last error: %v)", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warmUp makes Hydra create its signing keys (lazily made, about a second on
// first use) so that tests time nothing of it.
func (h *HydraInstance) warmUp(t testing.TB) {
	t.Helper()
	c := h.CreateClientSpec(t, ClientSpec{Audience: []string{"urn:airlock:warm-up"}})
	h.Token(t, c)
}

// tokenHook is Hydra's oauth2.token_hook: it adds each client's claims to the
// access token session. Hydra calls it for every grant type, client
// credentials included.
type tokenHook struct {
	mu     sync.Mutex
	claims map[string]map[string]any
}

func newTokenHook() *tokenHook { return &tokenHook{claims: map[string]map[string]any{}} }

func (th *tokenHook) set(clientID string, claims map[string]any) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.claims[clientID] = claims
}

func (th *tokenHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Request struct {
			ClientID string `json:"client_id"`
		} `json:"request"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	th.mu.Lock()
	claims, ok := th.claims[req.Request.ClientID]
	th.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"session": map[string]any{"access_token": claims},
	})
}

// hydraBinary finds or builds the Hydra binary (see hydraBinEnv).
func hydraBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(hydraBinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			Unavailable(t, "Ory Hydra", "set "+hydraBinEnv+" to a built hydra or unset it", err)
		}
		return p
	}
	root, err := repoRoot()
	if err != nil {
		Unavailable(t, "Ory Hydra", hydraBuildHint(), err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "internal/tools/hydra/go.sum"))
	if err != nil {
		Unavailable(t, "Ory Hydra", hydraBuildHint(), err)
	}
	h := sha256.Sum256(sum)
	binDir, err := TestBinDir()
	if err != nil {
		Unavailable(t, "Ory Hydra", hydraBuildHint(), err)
	}
	bin := filepath.Join(binDir, "hydra-"+hex.EncodeToString(h[:])[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin
	}

	hydraBuildMu.Lock()
	defer hydraBuildMu.Unlock()
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		Unavailable(t, "Ory Hydra", hydraBuildHint(), err)
	}
	// A file lock, so that test binaries of several packages build it once.
	lock, err := os.OpenFile(filepath.Join(binDir, ".hydra.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		Unavailable(t, "Ory Hydra", hydraBuildHint(), err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		Unavailable(t, "Ory Hydra", hydraBuildHint(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building Ory Hydra into %s (once per go.sum, about 90 s)", bin)
	out, err := exec.Command("bash", filepath.Join(root, "internal/tools/hydra/build.sh"), binDir).CombinedOutput()
	if err != nil {
		Unavailable(t, "Ory Hydra", hydraBuildHint(), fmt.Errorf("%v: %s", err, out))
	}
	return bin
}

var hydraBuildMu sync.Mutex

func hydraBuildHint() string {
	return "run `make test-deps` (builds it with internal/tools/hydra/build.sh into " + TestBinDirEnv + " or the user cache directory; needs go and gcc) or set " + hydraBinEnv
}

// repoRoot is the main module's root, found from this file's location.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the testenv source")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("no go.mod at %s: %w", root, err)
	}
	return root, nil
}
