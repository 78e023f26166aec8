package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/airlock-mcp/airlock/tools"
)

// Credential is a minted role: its name, its password (a tools.Secret) and,
// once first used, a small pool of connections logged in as it over TCP with
// SCRAM. Close closes the pool; the lease manager calls it on revoke.
type Credential struct {
	role     string
	password tools.Secret
	expires  time.Time
	readOnly bool
	resource *Resource
	// guard is the GuardKey the role was minted for ("" when it is a
	// member of its grant's roles); protected and withheld are the columns
	// and views it cannot read, for errors that explain a refusal.
	guard               string
	protected, withheld []string

	mu     sync.Mutex
	pool   *pgxpool.Pool
	closed bool
}

var (
	_ tools.Credential = (*Credential)(nil)
	_ io.Closer        = (*Credential)(nil)
)

func newCredential(r *Resource, role string, password tools.Secret, expires time.Time, g tools.Grant) *Credential {
	return &Credential{role: role, password: password, expires: expires, readOnly: g.ReadOnly(), resource: r}
}

// Handle is the role name.
func (c *Credential) Handle() string { return c.role }

// Expires is the role's VALID UNTIL.
func (c *Credential) Expires() time.Time { return c.expires }

// ReadOnly reports whether calls run in BEGIN READ ONLY and always roll back.
func (c *Credential) ReadOnly() bool { return c.readOnly }

func (c *Credential) String() string {
	return fmt.Sprintf("postgres role %s (password [REDACTED], valid until %s)", c.role, c.expires.UTC().Format(time.RFC3339))
}

// GoString redacts too, so %#v cannot reach the password or the pool config.
func (c *Credential) GoString() string { return c.String() }

// LogValue logs the role and expiry, never the password.
func (c *Credential) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("role", c.role),
		slog.Time("valid_until", c.expires),
		slog.Bool("read_only", c.readOnly),
		slog.String("guard", c.guard),
	)
}

// connPool returns the role's pool, created on first use (no connection is
// made until a call acquires one).
func (c *Credential) connPool() (*pgxpool.Pool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("postgres role %s: %w", c.role, ErrCredentialClosed)
	}
	if c.pool == nil {
		cfg := c.resource.credCfg.Copy()
		cfg.ConnConfig.User = c.role
		cfg.ConnConfig.Password = c.password.Reveal()
		p, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			return nil, fmt.Errorf("postgres role %s: creating its pool: %w", c.role, err)
		}
		c.pool = p
	}
	return c.pool, nil
}

// Close closes the role's connections. It does not drop the role: Revoke does.
func (c *Credential) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.pool != nil {
		c.pool.Close()
		c.pool = nil
	}
	return nil
}

// newPassword returns 32 random bytes, base64url without padding.
func newPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for a
// password (RFC 5802, RFC 7677), in pg_authid's format:
//
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// The password is ASCII (base64url), so SASLprep leaves it unchanged.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("generating a salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("deriving the SCRAM key: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, enc(salt), enc(storedKey[:]), enc(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// refusedRelation reports a permission error about reading a relation or a
// column ("permission denied for table customers"), the kind an enforced
// lease's missing privileges cause.
func refusedRelation(msg string) bool {
	for _, p := range []string{"permission denied for table ", "permission denied for view ", "permission denied for materialized view ", "permission denied for column ", "permission denied for relation "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// guardRefusal explains a permission error under an enforced lease: the
// role was minted without the columns its masking profile protects.
func (c *Credential) guardRefusal(pe *pgconn.PgError) error {
	what := "the columns its masking profile protects"
	if len(c.protected) > 0 {
		what += " (" + listSome(c.protected, 8) + ")"
	}
	if len(c.withheld) > 0 {
		what += " and views that read them or call functions that may (" + listSome(c.withheld, 4) + ")"
	}
	return fmt.Errorf("%w; this lease was minted so that PostgreSQL refuses %s: name the columns you need instead of * or whole rows", pe, what)
}

// installationPrefix starts the COMMENT of every role minted once an
// installation id is set: "airlock installation <id>".
const installationPrefix = "airlock installation "

// SetInstallation sets the installation id minted roles are marked with
// (their COMMENT) and that Orphans looks for, so two airlock installations
// on one cluster never drop each other's roles. The lease manager sets it
// from the store before it mints or lists orphans.
func (r *Resource) SetInstallation(id string) { r.installation.Store(&id) }

// installationComment is the statement that marks a new role, appended to
// CREATE ROLE so both run in one implicit transaction, or "" before an
// installation is set.
func (r *Resource) installationComment(ident string) (string, error) {
	id := r.installation.Load()
	if id == nil {
		return "", nil
	}
	valid := *id != ""
	for _, c := range *id {
		valid = valid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')
	}
	if !valid {
		return "", fmt.Errorf("installation id %q: only letters, digits and '-'", *id)
	}
	return "; COMMENT ON ROLE " + ident + " IS " + quoteLiteral(installationPrefix+*id), nil
}

// queryOurRoles lists the roles with the lease prefix this installation
// minted (their COMMENT names it), or all of them before an installation
// is set. A role minted before installations existed has no comment: it
// is left to its VALID UNTIL.
func (r *Resource) queryOurRoles(ctx context.Context, pool *pgxpool.Pool) (pgx.Rows, error) {
	id := r.installation.Load()
	if id == nil {
		return pool.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolname LIKE 'airlock\_%' ORDER BY rolname`)
	}
	return pool.Query(ctx, `SELECT rolname FROM pg_roles
		WHERE rolname LIKE 'airlock\_%' AND shobj_description(oid, 'pg_authid') = $1 ORDER BY rolname`,
		installationPrefix+*id)
}
