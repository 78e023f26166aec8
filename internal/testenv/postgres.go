package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL server started for one test. The admin
// connects over the unix socket as postgres (trust); other roles log in over
// TCP on Host:Port with SCRAM, as they would in production.
type Postgres struct {
	// AdminDSN connects as the superuser postgres over the unix socket.
	AdminDSN string
	// Host and Port are the TCP listen address (127.0.0.1 only).
	Host string
	Port int
	// SocketDir is the directory holding the unix socket.
	SocketDir string
	// DataDir is the server's data directory.
	DataDir string

	bin     string
	logFile string
	runAs   string // "postgres" when the test runs as root, else ""
	mu      sync.Mutex
	running bool
}

var (
	pgTemplateOnce sync.Once
	pgTemplateDir  string
	pgTemplateErr  error
)

// PostgreSQLBinDir finds the PostgreSQL server binaries: `pg_config --bindir`
// when that directory holds initdb, else the newest /usr/lib/postgresql/*/bin.
func PostgreSQLBinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", errors.New("no initdb and pg_ctl found via pg_config --bindir or /usr/lib/postgresql/*/bin")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// PostgreSQL starts a private PostgreSQL server for this test and stops it in
// t.Cleanup. The cluster is initialised once into a template (shared by the
// test processes of a run, see initTemplate) and copied for each call (about
// 0.25 s).
func PostgreSQL(t testing.TB) *Postgres {
	t.Helper()
	bin, err := PostgreSQLBinDir()
	if err != nil {
		Unavailable(t, "PostgreSQL", "install the Debian package postgresql", err)
	}
	runAs := ""
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			Unavailable(t, "PostgreSQL", "install the Debian package postgresql (it creates the user postgres; the server refuses to run as root)", err)
		}
		runAs = "postgres"
	}
	pgTemplateOnce.Do(func() { pgTemplateDir, pgTemplateErr = initTemplate(bin, runAs) })
	if pgTemplateErr != nil {
		t.Fatalf("testenv: initdb: %v", pgTemplateErr)
	}

	root := t.TempDir()
	makeTraversable(t, root)
	sockDir, err := os.MkdirTemp("", "airlock-pgsock-") // short: unix socket paths are limited to 107 bytes
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dataDir := filepath.Join(root, "data")
	if out, err := exec.Command("cp", "-a", pgTemplateDir, dataDir).CombinedOutput(); err != nil {
		t.Fatalf("testenv: copying the PostgreSQL template: %v: %s", err, out)
	}
	if runAs != "" {
		for _, dir := range []string{root, sockDir} {
			if out, err := exec.Command("chown", "-R", runAs, dir).CombinedOutput(); err != nil {
				t.Fatalf("testenv: chown %s: %v: %s", dir, err, out)
			}
		}
	}
	pg := &Postgres{
		Host:      "127.0.0.1",
		SocketDir: sockDir,
		DataDir:   dataDir,
		bin:       bin,
		logFile:   filepath.Join(root, "postgres.log"),
		runAs:     runAs,
	}
	var startErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between FreePort and start
		pg.Port = FreePort(t)
		if startErr = pg.start(); startErr == nil {
			break
		}
	}
	if startErr != nil {
		t.Fatalf("testenv: starting PostgreSQL: %v", startErr)
	}
	pg.AdminDSN = fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", sockDir, pg.Port)
	t.Cleanup(func() {
		pg.mu.Lock()
		defer pg.mu.Unlock()
		if pg.running {
			_ = pg.ctl("stop", "-m", "immediate", "-w")
			pg.running = false
		}
	})
	return pg
}

// initTemplate returns the data directory of an initialised cluster to copy.
// It is shared by test processes through a directory in os.TempDir named
// after the binaries and the initdb options, created atomically (initdb into
// a scratch directory, then rename), so a test run pays for initdb once.
func initTemplate(bin, runAs string) (string, error) {
	args := []string{"-U", "postgres", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"}
	key := sha256.Sum256([]byte(strings.Join(append([]string{bin, runAs}, args...), "\x00")))
	final := filepath.Join(os.TempDir(), fmt.Sprintf("airlock-testenv-pg-%x", key[:6]))
	if _, err := os.Stat(filepath.Join(final, "data", "PG_VERSION")); err == nil {
		return filepath.Join(final, "data"), nil
	}
	dir, err := os.MkdirTemp("", "airlock-pginit-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	if runAs != "" {
		if out, err := exec.Command("chown", runAs, dir).CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("chown %s: %v: %s", dir, err, out)
		}
	}
	full := append([]string{filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data")}, args...)
	if out, err := command(runAs, full...).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("%v: %s", err, out)
	}
	if err := os.Rename(dir, final); err != nil {
		// Another test process got there first: use its template.
		os.RemoveAll(dir)
		if _, serr := os.Stat(filepath.Join(final, "data", "PG_VERSION")); serr != nil {
			return "", fmt.Errorf("installing the template: %v", err)
		}
	}
	return filepath.Join(final, "data"), nil
}

func makeTraversable(t testing.TB, dir string) {
	t.Helper()
	// t.TempDir makes 0700 directories; the postgres user must reach into them.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
}

func command(runAs string, args ...string) *exec.Cmd {
	if runAs != "" {
		args = append([]string{"runuser", "-u", runAs, "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	return cmd
}

func (pg *Postgres) ctl(args ...string) error {
	full := append([]string{filepath.Join(pg.bin, "pg_ctl"), "-D", pg.DataDir}, args...)
	out, err := command(pg.runAs, full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s%s", args[0], err, out, pg.logTail())
	}
	return nil
}

func (pg *Postgres) start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", pg.Port, pg.SocketDir)
	if err := pg.ctl("start", "-w", "-t", "30", "-l", pg.logFile, "-o", opts); err != nil {
		return err
	}
	pg.running = true
	return nil
}

func (pg *Postgres) logTail() string {
	b, err := os.ReadFile(pg.logFile)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nserver log:\n" + string(bytes.TrimSpace(b))
}

// Stop stops the server at once (pg_ctl stop -m immediate), for tests of a
// backend that goes away mid-call.
func (pg *Postgres) Stop(t testing.TB) {
	t.Helper()
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if !pg.running {
		return
	}
	if err := pg.ctl("stop", "-m", "immediate", "-w"); err != nil {
		t.Fatalf("testenv: stopping PostgreSQL: %v", err)
	}
	pg.running = false
}

// Start starts the server again after Stop, on the same port.
func (pg *Postgres) Start(t testing.TB) {
	t.Helper()
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.running {
		return
	}
	if err := pg.start(); err != nil {
		t.Fatalf("testenv: starting PostgreSQL: %v", err)
	}
}

// Exec runs sql (one or more statements) as the superuser and fails the test
// on error.
func (pg *Postgres) Exec(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.AdminDSN)
	if err != nil {
		t.Fatalf("testenv: connecting as admin: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("testenv: %v\nSQL: %s", err, sql)
	}
}
