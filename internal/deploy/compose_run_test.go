package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// TestComposeDemoWithoutDocker runs what the compose quick-start's
// containers run, without Docker, against a real PostgreSQL and a real sshd:
// the keys service's key maker, the postgres service's init scripts
// (examples/demo/seed.sql, then compose/postgres-admin.sh), the demo host's
// sshd_config; then `airlock doctor` with compose/airlock.yaml, its
// container paths and ports pointed at them. Doctor logs in as demo_admin,
// mints and drops a role for each grant (with enforce: privileges), and has
// a certificate from the made CA accepted by the demo sshd: what an agent's
// first calls in the quick-start need.
func TestComposeDemoWithoutDocker(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "root", "run the tests as root: the key maker chowns files to the containers' users, and sshd needs root", fmt.Errorf("euid %d", os.Geteuid()))
	}
	for _, tool := range []string{"ssh-keygen", testenv.SSHDBinary} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "OpenSSH", "install the Debian packages openssh-client and openssh-server", err)
		}
	}
	root := repoRoot(t)
	compose := filepath.Join(root, "deploy", "compose")
	_, airlock := release(t)

	pg := testenv.PostgreSQL(t)
	sshPort := testenv.FreePort(t)

	// keys: airlock-demo-keys /keys.
	keys := t.TempDir()
	keyEnv := []string{"AIRLOCK_DEMO_PG_PORT=" + strconv.Itoa(pg.Port), "AIRLOCK_DEMO_SSH_PORT=" + strconv.Itoa(sshPort)}
	run(t, keyEnv, "sh", filepath.Join(compose, "demo-host", "make-keys.sh"), keys)
	for name, want := range map[string]string{"user_ca": "65532:65532 400", "admin.dsn": "65532:65532 400",
		"admin.pw": "999:999 400", "postgres.pw": "999:999 400", "host_key": "0:0 600", "known_hosts": "0:0 444"} {
		if got := run(t, nil, "stat", "-c", "%u:%g %a", filepath.Join(keys, name)); got != want {
			t.Errorf("%s: owner and mode %s, want %s", name, got, want)
		}
	}
	// Made once: a second run keeps the keys.
	ca := readFile(t, filepath.Join(keys, "user_ca"))
	run(t, keyEnv, "sh", filepath.Join(compose, "demo-host", "make-keys.sh"), keys)
	if !bytes.Equal(ca, readFile(t, filepath.Join(keys, "user_ca"))) {
		t.Error("a second run of the key maker replaced the user CA")
	}

	// postgres: POSTGRES_DB=shop, then /docker-entrypoint-initdb.d in order.
	pg.Exec(t, "CREATE DATABASE shop")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, strings.Replace(pg.AdminDSN, "dbname=postgres", "dbname=shop", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, string(readFile(t, filepath.Join(root, "examples", "demo", "seed.sql")))); err != nil {
		t.Fatalf("10-seed.sql: %v", err)
	}
	conn.Close(ctx)
	pgBin, err := testenv.PostgreSQLBinDir()
	if err != nil {
		t.Fatal(err)
	}
	run(t, []string{"AIRLOCK_DEMO_KEYS=" + keys, "POSTGRES_USER=postgres", "POSTGRES_DB=shop",
		"PGHOST=" + pg.SocketDir, "PGPORT=" + strconv.Itoa(pg.Port), "PATH=" + pgBin + ":" + os.Getenv("PATH")},
		"bash", filepath.Join(compose, "postgres-admin.sh"))

	// demo-host: the image's account and sshd_config, on loopback.
	for _, args := range [][]string{
		{"sh", "-c", "id airlock-demo >/dev/null 2>&1 || useradd --create-home --shell /bin/bash airlock-demo"},
		{"usermod", "-p", "*", "airlock-demo"},
		{"mkdir", "-p", "/run/sshd"},
	} {
		run(t, nil, args[0], args[1:]...)
	}
	conf := strings.ReplaceAll(string(readFile(t, filepath.Join(compose, "demo-host", "sshd_config"))), "/keys/", keys+"/")
	conf = strings.Replace(conf, "\nPort 2222\n", "\nPort "+strconv.Itoa(sshPort)+"\n", 1)
	// sshd takes the first value of a keyword: these come first.
	conf = "ListenAddress 127.0.0.1\nPidFile " + filepath.Join(keys, "sshd.pid") + "\n" + conf
	confPath := filepath.Join(t.TempDir(), "sshd_config")
	writeFile(t, confPath, []byte(conf))
	var sshdLog bytes.Buffer
	sshd := exec.Command(testenv.SSHDBinary, "-D", "-e", "-f", confPath)
	sshd.Stdout, sshd.Stderr = &sshdLog, &sshdLog
	if err := sshd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sshd.Process.Kill(); _ = sshd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(sshPort)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo sshd does not listen on %s:\n%s", addr, sshdLog.String())
		}
	}

	// airlock: compose/airlock.yaml with the container's paths and ports
	// pointed at the above, and the demo's policy beside it.
	dir := t.TempDir()
	cfg := string(readFile(t, filepath.Join(compose, "airlock.yaml")))
	for old, repl := range map[string]string{
		"/etc/airlock/demo/":                   keys + "/",
		"sqlite:///var/lib/airlock/airlock.db": "sqlite://" + filepath.Join(dir, "airlock.db"),
		"address: 127.0.0.1:52222":             "address: " + addr,
		"listen: 127.0.0.1:8080":               "listen: 127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("compose/airlock.yaml no longer has %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	writeFile(t, filepath.Join(dir, "airlock.yaml"), []byte(cfg))
	writeFile(t, filepath.Join(dir, "policy.yaml"), readFile(t, filepath.Join(root, "examples", "demo", "policy.yaml")))
	doctor := exec.Command(airlock, "doctor", "--config", filepath.Join(dir, "airlock.yaml"))
	out, err := doctor.CombinedOutput()
	if err != nil {
		t.Errorf("airlock doctor with the compose config: %v\n%s\ndemo sshd log:\n%s", err, out, sshdLog.String())
	}
	for _, want := range []string{"admin logs in", "grant readonly: a minted role logs in and is dropped",
		"grant readwrite: a minted role logs in and is dropped", "grant operator: certificate accepted for airlock-demo"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("airlock doctor did not check %q:\n%s", want, out)
		}
	}
}

// run runs a command with env added to the test's environment and returns
// its trimmed output, failing the test on error.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
