package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerfile is deploy/Dockerfile read instruction by instruction: enough of
// the format (comments, line continuations, FROM ... AS) for the checks
// below, which a Docker engine would otherwise make at build time.
type dockerfile struct {
	args   map[string]string // ARGs before the first FROM, with defaults
	stages []*stage
}

type stage struct {
	from, name string
	ins        []instruction
}

type instruction struct {
	cmd  string // upper case: RUN, COPY, ...
	args string
}

// all returns the arguments of every instruction cmd of the stage.
func (s *stage) all(cmd string) []string {
	var out []string
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// last returns the arguments of the stage's last instruction cmd: the one
// that counts for USER, ENTRYPOINT, CMD.
func (s *stage) last(cmd string) string {
	all := s.all(cmd)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

func parseDockerfile(t testing.TB, path string) *dockerfile {
	t.Helper()
	df := &dockerfile{args: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		args = strings.TrimSpace(args)
		switch {
		case cmd == "FROM":
			f := strings.Fields(args)
			s := &stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			df.stages = append(df.stages, s)
		case len(df.stages) == 0 && cmd == "ARG":
			k, v, _ := strings.Cut(args, "=")
			df.args[k] = v
		case len(df.stages) == 0:
			t.Fatalf("%s: %s before the first FROM", path, cmd)
		default:
			s := df.stages[len(df.stages)-1]
			s.ins = append(s.ins, instruction{cmd: cmd, args: args})
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue // a comment, also between continued lines
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return df
}

// expand replaces ${NAME} with the global ARG defaults.
func (df *dockerfile) expand(s string) string {
	return regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(s, func(m string) string {
		return df.args[m[2:len(m)-1]]
	})
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	df := parseDockerfile(t, filepath.Join(root, "deploy", "Dockerfile"))
	if len(df.stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, runtime)", len(df.stages))
	}
	build, final := df.stages[0], df.stages[1]

	// The builder is the official Go image of go.mod's Go version on
	// bookworm; the runtime is a glibc base of the same Debian release
	// (distroless's debian12 is bookworm), so the cgo binary finds the glibc
	// it was linked against.
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(readFile(t, filepath.Join(root, "go.mod")))
	if goVersion == nil {
		t.Fatal("go.mod has no go line")
	}
	if want := "golang:" + string(goVersion[1]) + "-bookworm"; df.expand(build.from) != want || build.name != "build" {
		t.Errorf("builder FROM %s AS %s (%s), want %s AS build", build.from, build.name, df.expand(build.from), want)
	}
	if !strings.HasPrefix(final.from, "gcr.io/distroless/cc-debian12:") && !strings.HasPrefix(final.from, "debian:bookworm-slim") {
		t.Errorf("runtime FROM %s: want a bookworm glibc base", final.from)
	}
	buildEnv := strings.Join(build.all("ENV"), " ")
	buildRun := strings.Join(build.all("RUN"), " ")
	for _, want := range []string{"CGO_ENABLED=1", "GOTOOLCHAIN=local"} {
		if !strings.Contains(buildEnv, want) {
			t.Errorf("the builder's ENV lacks %s", want)
		}
	}
	for _, want := range []string{"go build -trimpath", "-X main.version=${VERSION}", "-o /out/usr/local/bin/airlock ./cmd/airlock"} {
		if !strings.Contains(buildRun, want) {
			t.Errorf("the builder's RUN lacks %q", want)
		}
	}

	// Runtime: a numeric non-root USER that owns the state volume; the
	// entrypoint and command the manifests and compose rely on.
	user := final.last("USER")
	if !regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`).MatchString(user) {
		t.Errorf("runtime USER %q, want a numeric non-root UID:GID (Kubernetes' runAsNonRoot checks it)", user)
	}
	uid, gid, _ := strings.Cut(user, ":")
	if !strings.Contains(buildRun, "-o "+uid+" -g "+gid+" /out/var/lib/airlock") {
		t.Errorf("the builder does not make /var/lib/airlock owned by %s", user)
	}
	jsonArgs := func(cmd string) []string {
		var v []string
		if err := json.Unmarshal([]byte(final.last(cmd)), &v); err != nil {
			t.Errorf("%s %s is not in exec (JSON) form: %v", cmd, final.last(cmd), err)
		}
		return v
	}
	if got := jsonArgs("ENTRYPOINT"); !slices.Equal(got, []string{"airlock"}) {
		t.Errorf("ENTRYPOINT %q", got)
	}
	if got := jsonArgs("CMD"); !slices.Equal(got, []string{"serve", "--config", "/etc/airlock/airlock.yaml"}) {
		t.Errorf("CMD %q", got)
	}
	if got := jsonArgs("VOLUME"); !slices.Equal(got, []string{"/var/lib/airlock"}) {
		t.Errorf("VOLUME %q", got)
	}
	if got := final.last("EXPOSE"); got != "8080" {
		t.Errorf("EXPOSE %q", got)
	}
	for _, s := range df.stages {
		if len(s.all("HEALTHCHECK")) > 0 {
			t.Error("HEALTHCHECK: the image leaves health to Kubernetes probes (/healthz, /readyz)")
		}
	}
	if !strings.Contains(strings.Join(final.all("COPY"), "\n"), "--from=build /out/ /") {
		t.Error("the runtime does not copy the builder's /out/")
	}
	labels := strings.Join(final.all("LABEL"), " ")
	for _, l := range []string{"title", "description", "licenses", "source", "version", "revision"} {
		if !strings.Contains(labels, "org.opencontainers.image."+l+"=") {
			t.Errorf("no OCI label org.opencontainers.image.%s", l)
		}
	}
	if !strings.Contains(labels, `org.opencontainers.image.licenses="Apache-2.0"`) ||
		!bytes.Contains(readFile(t, filepath.Join(root, "LICENSE")), []byte("Apache License\n                           Version 2.0")) {
		t.Error("the licenses label and LICENSE do not both say Apache-2.0")
	}

	// Every COPY from the context names a path of the repository that the
	// Dockerfile's .dockerignore lets in, and together they hold every
	// package (and embedded file) ./cmd/airlock is built from.
	allowed := map[string]bool{}
	for _, line := range strings.Split(string(readFile(t, filepath.Join(root, "deploy", "Dockerfile.dockerignore"))), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "!"); ok {
			allowed[strings.TrimSuffix(p, "/")] = true
		}
	}
	var sources []string
	for _, s := range df.stages {
		for _, args := range s.all("COPY") {
			f := strings.Fields(args)
			if strings.HasPrefix(f[0], "--from=") {
				from := strings.TrimPrefix(f[0], "--from=")
				if !slices.ContainsFunc(df.stages, func(o *stage) bool { return o.name == from && o != s }) {
					t.Errorf("COPY %s: no stage %q before it", args, from)
				}
				continue
			}
			for _, src := range f[:len(f)-1] {
				if strings.HasPrefix(src, "--") {
					continue
				}
				src = strings.TrimSuffix(strings.TrimPrefix(src, "./"), "/")
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("COPY %s: %v", args, err)
				}
				if !allowed[src] {
					t.Errorf("COPY %s: deploy/Dockerfile.dockerignore leaves %s out of the context", args, src)
				}
				sources = append(sources, src)
			}
		}
	}
	list := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .EmbedFiles}} {{$.Dir}}/{{.}}{{end}}{{end}}{{end}}`, "./cmd/airlock")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/airlock: %v", err)
	}
	for _, path := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(sources, func(src string) bool { return rel == src || strings.HasPrefix(rel, src+"/") }) {
			t.Errorf("./cmd/airlock needs %s, which no COPY of deploy/Dockerfile brings in", rel)
		}
	}
}
