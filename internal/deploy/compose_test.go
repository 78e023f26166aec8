package deploy

import (
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/airlock-mcp/airlock/broker/config"
)

// composeFile is the part of the Compose format deploy/compose.yaml uses.
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

type composeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build"`
	Healthcheck map[string]any `json:"healthcheck"`
	SecurityOpt []string       `json:"security_opt"`
	Command     []string       `json:"command"`
	NetworkMode string         `json:"network_mode"`
	ReadOnly    bool           `json:"read_only"`
	Tmpfs       []string       `json:"tmpfs"`
	CapDrop     []string       `json:"cap_drop"`
	Ports       []string       `json:"ports"`
	Volumes     []string       `json:"volumes"`
	Environment map[string]any `json:"environment"`
	DependsOn   map[string]any `json:"depends_on"`
}

func readCompose(t testing.TB) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(repoRoot(t), "deploy", "compose.yaml")), &c); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	return c
}

// TestCompose checks deploy/compose.yaml as `docker compose up` would need
// it: build contexts and bind-mounted files that exist, named volumes that
// are declared, everything on the host's loopback only, and ports and paths
// that agree with the airlock config, the key maker and the demo sshd.
func TestCompose(t *testing.T) {
	root := repoRoot(t)
	deploy := filepath.Join(root, "deploy")
	c := readCompose(t)
	for _, name := range []string{"keys", "postgres", "demo-host", "airlock"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("no service %s", name)
		}
	}
	published := map[string]string{} // host address → service:container port
	for name, s := range c.Services {
		if s.Build != nil {
			ctx := filepath.Join(deploy, s.Build.Context)
			dockerfile := s.Build.Dockerfile
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			df := filepath.Join(ctx, dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s: build: %v", name, err)
			} else {
				for _, st := range parseDockerfile(t, df).stages {
					for _, args := range st.all("COPY") {
						f := strings.Fields(args)
						if strings.HasPrefix(f[0], "--from=") {
							continue
						}
						for _, src := range f[:len(f)-1] {
							if _, err := os.Stat(filepath.Join(ctx, src)); err != nil && !strings.HasPrefix(src, "--") {
								t.Errorf("%s: %s: COPY %s: %v", name, df, args, err)
							}
						}
					}
				}
			}
		}
		for _, p := range s.Ports {
			// host_ip:host_port:container_port
			parts := strings.Split(p, ":")
			if len(parts) != 3 || !net.ParseIP(parts[0]).IsLoopback() {
				t.Errorf("%s: port %q is not bound to the host's loopback", name, p)
				continue
			}
			published[parts[0]+":"+parts[1]] = name + ":" + parts[2]
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(deploy, src)); err != nil {
					t.Errorf("%s: volume %s: %v", name, v, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: volume %s is not declared under volumes:", name, src)
			}
		}
	}

	// airlock: the image of deploy/Dockerfile, read-only, no capabilities,
	// on the host's network because auth.mode none listens on loopback only.
	a := c.Services["airlock"]
	if a.Build == nil || a.Build.Context != ".." || a.Build.Dockerfile != "deploy/Dockerfile" {
		t.Errorf("airlock build %+v, want context .. and deploy/Dockerfile", a.Build)
	}
	if !a.ReadOnly || !slices.Contains(a.Tmpfs, "/tmp") || !slices.Equal(a.CapDrop, []string{"ALL"}) {
		t.Errorf("airlock: read_only %v, tmpfs %v, cap_drop %v: want true, /tmp, ALL", a.ReadOnly, a.Tmpfs, a.CapDrop)
	}
	mounts := map[string]string{} // target → source
	for _, v := range a.Volumes {
		parts := strings.Split(v, ":")
		mounts[parts[1]] = parts[0]
	}
	if mounts["/etc/airlock/airlock.yaml"] != "./compose/airlock.yaml" {
		t.Fatalf("airlock's /etc/airlock/airlock.yaml (the image's CMD) comes from %q", mounts["/etc/airlock/airlock.yaml"])
	}
	cfgPath := filepath.Join(deploy, "compose", "airlock.yaml")
	cfg, errs := config.Check(cfgPath)
	if cfg == nil || len(errs) > 0 {
		t.Fatalf("%s: %v", cfgPath, errs)
	}
	if cfg.Auth.Mode == config.AuthNone && (!cfg.IsLoopback() || a.NetworkMode != "host") {
		t.Errorf("auth.mode none needs a loopback listen on the host's network: listen %s, network_mode %q", cfg.Listen, a.NetworkMode)
	}
	// Every file the config names is under one of airlock's mounts.
	underMount := func(path string) bool {
		for target := range mounts {
			if path == target || strings.HasPrefix(path, strings.TrimSuffix(target, "/")+"/") {
				return true
			}
		}
		return false
	}
	// In the container the config is /etc/airlock/airlock.yaml: relative
	// paths are relative to /etc/airlock.
	inContainer := func(p string) string {
		if path.IsAbs(p) {
			return p
		}
		return path.Join("/etc/airlock", p)
	}
	policy := inContainer(cfg.Policy)
	named := []string{policy, strings.TrimPrefix(cfg.Store, "sqlite://")}
	for _, r := range secretReferences(t, readFile(t, cfgPath)) {
		if strings.HasPrefix(r, "/") {
			named = append(named, r)
		}
	}
	for _, p := range named {
		if !underMount(p) {
			t.Errorf("the compose config names %s, which no volume of the airlock service holds", p)
		}
	}

	// The addresses airlock dials are what compose publishes, and the
	// container ports are what the demo host and PostgreSQL listen on.
	keys := string(readFile(t, filepath.Join(deploy, "compose", "demo-host", "make-keys.sh")))
	pgPort := regexp.MustCompile(`AIRLOCK_DEMO_PG_PORT:-(\d+)`).FindStringSubmatch(keys)
	sshPort := regexp.MustCompile(`AIRLOCK_DEMO_SSH_PORT:-(\d+)`).FindStringSubmatch(keys)
	sshdPort := regexp.MustCompile(`(?m)^Port (\d+)$`).FindStringSubmatch(string(readFile(t, filepath.Join(deploy, "compose", "demo-host", "sshd_config"))))
	if pgPort == nil || sshPort == nil || sshdPort == nil {
		t.Fatal("make-keys.sh or sshd_config no longer names its ports")
	}
	if got := published["127.0.0.1:"+pgPort[1]]; got != "postgres:5432" {
		t.Errorf("admin.dsn dials 127.0.0.1:%s, which compose publishes for %q", pgPort[1], got)
	}
	for _, r := range cfg.Resources {
		if r.Kind != "ssh" {
			continue
		}
		if r.Address != "127.0.0.1:"+sshPort[1] {
			t.Errorf("resource %s dials %s; known_hosts is written for 127.0.0.1:%s", r.Name, r.Address, sshPort[1])
		}
		if got := published[r.Address]; got != "demo-host:"+sshdPort[1] {
			t.Errorf("resource %s dials %s, which compose publishes for %q (the demo sshd listens on %s)", r.Name, r.Address, got, sshdPort[1])
		}
	}
	if !strings.Contains(string(readFile(t, cfgPath)), "# store: postgres://") {
		t.Error("the compose config has no marked place for store: postgres://…")
	}

	// The config, with the policy compose mounts beside it, passes airlock
	// config check.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "airlock.yaml"), readFile(t, cfgPath))
	policySrc := mounts[policy]
	if policySrc == "" {
		t.Fatalf("no mount holds the policy %s", policy)
	}
	writeFile(t, filepath.Join(dir, cfg.Policy), readFile(t, filepath.Join(deploy, policySrc)))
	configCheck(t, filepath.Join(dir, "airlock.yaml"))
}
