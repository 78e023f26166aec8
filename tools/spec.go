package tools

import (
	"strings"
	"time"
)

// ResourceSpec is one entry of `resources:` in the config, as the user wrote
// it. Settings of every kind share this struct so the config reads flat, as
// in DESIGN.md; each Kind's Open rejects settings that are not its own.
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

// ForeignSettings lists the settings that are set on the resource but
// belong to a kind other than kind, so that a kind's Open can reject them
// with a sentence saying whose they are.
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
	}
	var out []Setting
	for _, st := range all {
		if st.set && st.Kind != kind {
			out = append(out, st.Setting)
		}
	}
	return out
}

// OwnerPhrase says whose setting it is: "an ssh setting".
func (s Setting) OwnerPhrase() string {
	if s.Kind == "ssh" || s.Kind != "" && strings.ContainsRune("aeiou", rune(s.Kind[0])) {
		return "an " + s.Kind + " setting"
	}
	return "a " + s.Kind + " setting"
}
