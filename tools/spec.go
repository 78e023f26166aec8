package tools

import (
	"slices"
	"strings"
	"time"
)

// ResourceSpec is one entry of `resources:` in the config, as the user wrote
// it. The config reads flat, as in DESIGN.md: a kind's settings sit beside
// the common keys. The built-in kinds' settings are fields here; any other
// kind's are in Settings, which the kind reads with DecodeSettings
// (settings.go). Each Kind's Open rejects settings that are not its own
// (ForeignSettings).
type ResourceSpec struct {
	Name        string            `yaml:"name" json:"name"`
	Kind        string            `yaml:"kind" json:"kind"`
	Description string            `yaml:"description" json:"description,omitempty"`
	Labels      map[string]string `yaml:"labels" json:"labels,omitempty"`
	Grants      map[string]Grant  `yaml:"grants" json:"-"`
	// Mask is the masking profile applied when the deciding rule names none.
	Mask string `yaml:"mask" json:"-"`

	// postgres
	AdminDSNEnv  string `yaml:"admin_dsn_env" json:"-"`
	AdminDSNFile string `yaml:"admin_dsn_file" json:"-"`
	// ConnectHost overrides the host minted roles connect to (default: the
	// admin DSN's host; a unix socket there becomes 127.0.0.1).
	ConnectHost string `yaml:"connect_host" json:"-"`

	// ssh
	Address        string   `yaml:"address" json:"-"`
	HostKey        string   `yaml:"host_key" json:"-"`
	HostCA         string   `yaml:"host_ca" json:"-"`
	KnownHostsFile string   `yaml:"known_hosts_file" json:"-"`
	CAKeyFile      string   `yaml:"ca_key_file" json:"-"`
	CAKeyEnv       string   `yaml:"ca_key_env" json:"-"`
	SourceAddress  []string `yaml:"source_address" json:"-"`
	MaxSessions    int      `yaml:"max_sessions" json:"-"`
	// Shell is the path of bash on the host: every command runs under it,
	// whatever the account's login shell (default /bin/bash).
	Shell string `yaml:"shell" json:"-"`

	// kubernetes
	KubeconfigFile string `yaml:"kubeconfig_file" json:"-"`
	InCluster      bool   `yaml:"in_cluster" json:"-"`
	// ClusterScopedWrites lists the cluster-wide kinds kubectl_delete and
	// kubectl_apply may write (e.g. clusterroles.rbac.authorization.k8s.io);
	// every other cluster-wide kind is refused.
	ClusterScopedWrites []string `yaml:"cluster_scoped_writes" json:"-"`

	// Settings are the entry's keys no field above names: the settings of
	// a kind that keeps them out of this struct (http), read with
	// DecodeSettings. The config decoder fills it in.
	Settings Settings `yaml:"-" json:"-"`
}

// Grant is a named set of privileges a policy rule can hand out for one
// resource. Which fields apply depends on the resource's kind.
type Grant struct {
	// TTL is how long a lease under this grant lives.
	TTL time.Duration `yaml:"ttl" json:"ttl"`

	// postgres: roles the minted role is a member of, and whether the
	// session may write. Access is "read_only" (the default: every call runs
	// in BEGIN READ ONLY) or "read_write".
	Roles  []string `yaml:"roles" json:"roles,omitempty"`
	Access string   `yaml:"access" json:"access,omitempty"`

	// ssh: certificate principals, and whether the certificate permits a PTY.
	Principals []string `yaml:"principals" json:"principals,omitempty"`
	PermitPTY  bool     `yaml:"permit_pty" json:"permit_pty,omitempty"`

	// kubernetes: a ServiceAccount ("namespace/name") to mint tokens for, or
	// an identity to impersonate.
	ServiceAccount string         `yaml:"service_account" json:"service_account,omitempty"`
	Impersonate    *Impersonation `yaml:"impersonate" json:"impersonate,omitempty"`

	// Settings are the grant's keys no field above names, for a kind that
	// reads its grant settings with DecodeSettings (http: scopes,
	// audience).
	Settings Settings `yaml:"-" json:"-"`
}

// ReadOnly reports whether the grant allows reads only.
func (g Grant) ReadOnly() bool { return g.Access != AccessReadWrite }

// Grant access values.
const (
	AccessReadOnly  = "read_only"
	AccessReadWrite = "read_write"
)

// Impersonation is a Kubernetes grant acting as the caller.
type Impersonation struct {
	User   string   `yaml:"user" json:"user"`
	Groups []string `yaml:"groups" json:"groups,omitempty"`
}

// Setting names one kind-specific setting of a resource.
type Setting struct {
	Key  string // as written in config, e.g. "host_key"
	Kind string // the kind it belongs to
}

// typedKinds are the kinds whose settings are fields of ResourceSpec and
// Grant; they take nothing in Settings.
var typedKinds = []string{"postgres", "ssh", "kubernetes"}

// ForeignSettings lists the settings that are set on the resource but
// belong to a kind other than kind, so that a kind's Open can reject them
// with a sentence saying whose they are: the fields of the built-in kinds,
// then the keys in Settings another kind registered (RegisterSettings),
// each with that kind. For postgres, ssh and kubernetes every key in
// Settings is foreign, a key no kind registered with Kind "" ("a key no
// kind takes"); any other kind reports those itself, through
// DecodeSettings.
func (s ResourceSpec) ForeignSettings(kind string) []Setting {
	all := []struct {
		Setting
		set bool
	}{
		{Setting{"admin_dsn_env", "postgres"}, s.AdminDSNEnv != ""},
		{Setting{"admin_dsn_file", "postgres"}, s.AdminDSNFile != ""},
		{Setting{"connect_host", "postgres"}, s.ConnectHost != ""},
		{Setting{"address", "ssh"}, s.Address != ""},
		{Setting{"host_key", "ssh"}, s.HostKey != ""},
		{Setting{"host_ca", "ssh"}, s.HostCA != ""},
		{Setting{"known_hosts_file", "ssh"}, s.KnownHostsFile != ""},
		{Setting{"ca_key_file", "ssh"}, s.CAKeyFile != ""},
		{Setting{"ca_key_env", "ssh"}, s.CAKeyEnv != ""},
		{Setting{"source_address", "ssh"}, len(s.SourceAddress) > 0},
		{Setting{"max_sessions", "ssh"}, s.MaxSessions != 0},
		{Setting{"shell", "ssh"}, s.Shell != ""},
		{Setting{"kubeconfig_file", "kubernetes"}, s.KubeconfigFile != ""},
		{Setting{"in_cluster", "kubernetes"}, s.InCluster},
		{Setting{"cluster_scoped_writes", "kubernetes"}, len(s.ClusterScopedWrites) > 0},
	}
	var out []Setting
	for _, st := range all {
		if st.set && st.Kind != kind {
			out = append(out, st.Setting)
		}
	}
	return append(out, foreignIn(s.Settings, kind, false)...)
}

// ForeignSettings lists the grant's settings that belong to a kind other
// than kind, as ResourceSpec.ForeignSettings does for a resource.
func (g Grant) ForeignSettings(kind string) []Setting {
	all := []struct {
		Setting
		set bool
	}{
		{Setting{"roles", "postgres"}, len(g.Roles) > 0},
		{Setting{"access", "postgres"}, g.Access != ""},
		{Setting{"principals", "ssh"}, len(g.Principals) > 0},
		{Setting{"permit_pty", "ssh"}, g.PermitPTY},
		{Setting{"service_account", "kubernetes"}, g.ServiceAccount != ""},
		{Setting{"impersonate", "kubernetes"}, g.Impersonate != nil},
	}
	var out []Setting
	for _, st := range all {
		if st.set && st.Kind != kind {
			out = append(out, st.Setting)
		}
	}
	return append(out, foreignIn(g.Settings, kind, true)...)
}

// foreignIn lists the keys of settings that belong to another kind than
// kind, sorted, each with the registered kind that has it. For the built-in
// kinds, which read nothing from Settings, every key is foreign (with no
// kind when none registered it); a kind that reads Settings is left the
// keys nobody registered, which its DecodeSettings reports as unknown, with
// a suggestion.
func foreignIn(settings Settings, kind string, grant bool) []Setting {
	var own []string
	if ks, ok := RegisteredSettings(kind); ok {
		t := ks.Resource
		if grant {
			t = ks.Grant
		}
		if t != nil {
			own = SettingKeys(t)
		}
	}
	var out []Setting
	typed := slices.Contains(typedKinds, kind)
	for _, k := range slices.Sorted(mapKeys(settings)) {
		if slices.Contains(own, k) {
			continue
		}
		if owner := SettingOwner(k, grant); owner != "" || typed {
			out = append(out, Setting{Key: k, Kind: owner})
		}
	}
	return out
}

// OwnerPhrase says whose setting it is: "an ssh setting", or "a key no kind
// takes" for a key that belongs to no kind.
func (s Setting) OwnerPhrase() string {
	switch {
	case s.Kind == "":
		return "a key no kind takes"
	case s.Kind == "ssh" || s.Kind == "http" || strings.ContainsRune("aeiou", rune(s.Kind[0])):
		return "an " + s.Kind + " setting"
	}
	return "a " + s.Kind + " setting"
}
