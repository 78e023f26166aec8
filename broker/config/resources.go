package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/tools"
)

// The checks here are what a resource's kind would refuse when it opens the
// resource, made on the file itself: every problem of every resource at once,
// each with its key and line, and without resolving a secret. The kinds
// (tools/postgres, tools/ssh, tools/kubernetes) check again when they open;
// what only they can see (a secret that is not set, a key that does not
// parse) comes from them, through ResourceError.

// kindSettings lists, per kind, the resource settings of that kind as a
// sentence fragment for messages.
var kindSettings = map[string]string{
	"postgres":   "admin_dsn_env | admin_dsn_file and connect_host",
	"ssh":        "address, host_key | host_ca | known_hosts_file, ca_key_file | ca_key_env, source_address, max_sessions and shell",
	"kubernetes": "kubeconfig_file | in_cluster, and cluster_scoped_writes",
}

// grantKeys says which grant settings a kind takes.
var grantKeys = map[string]string{
	"postgres":   "roles, access and ttl",
	"ssh":        "principals, permit_pty and ttl",
	"kubernetes": "service_account (NAMESPACE/NAME) or impersonate ({user, groups}), and ttl",
}

// A kind outside ResourceSpec's fields (http) keeps its settings in
// tools.Settings and registers their types (tools.RegisterSettings): the
// file is checked against them here as strictly as the built-in kinds'
// fields, each problem with its key and line, without opening anything.

// knownKinds lists the kinds a config may name: the built-in ones and the
// registered ones.
func knownKinds() []string {
	out := slices.Clone(KnownKinds)
	for _, k := range tools.RegisteredKinds() {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// commonResourceKeys are the keys every resource entry takes.
var commonResourceKeys = []string{"name", "kind", "description", "labels", "grants", "mask"}

// resourceKeys lists the keys a resource of kind may have: for the built-in
// kinds every field of ResourceSpec (as the decoder has always said), for a
// registered kind the common keys and its own.
func resourceKeys(kind string) []string {
	if ks, ok := tools.RegisteredSettings(kind); ok {
		keys := slices.Clone(commonResourceKeys)
		if ks.Resource != nil {
			keys = append(keys, tools.SettingKeys(ks.Resource)...)
		}
		return keys
	}
	return tools.SettingKeys(resourceSpecType)
}

// settingsPhrase says which settings a kind's resources take.
func settingsPhrase(kind string) string {
	if p, ok := kindSettings[kind]; ok {
		return p
	}
	return andList(ownKeys(kind, false))
}

// grantPhrase says which settings a kind's grants take.
func grantPhrase(kind string) string {
	if p, ok := grantKeys[kind]; ok {
		return p
	}
	return andList(append(ownKeys(kind, true), "ttl"))
}

func ownKeys(kind string, grant bool) []string {
	ks, _ := tools.RegisteredSettings(kind)
	t := ks.Resource
	if grant {
		t = ks.Grant
	}
	if t == nil {
		return nil
	}
	return tools.SettingKeys(t)
}

func andList(keys []string) string {
	switch len(keys) {
	case 0:
		return "no settings of their own"
	case 1:
		return keys[0]
	}
	return strings.Join(keys[:len(keys)-1], ", ") + " and " + keys[len(keys)-1]
}

// unclaimed reports the keys of a registered kind's settings that neither
// it nor any other kind takes (another kind's keys are reported as
// foreign), as the decoder reports an unknown key: with the valid keys.
func unclaimed(key string, settings tools.Settings, valid []string, grant bool, fail func(key, format string, args ...any)) {
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		if !slices.Contains(valid, k) && tools.SettingOwner(k, grant) == "" {
			fail(key+"."+k, "unknown key%s; valid keys in %s: %s", tools.Suggest(k, valid), key, strings.Join(valid, ", "))
		}
	}
}

// decodeOwn decodes a registered kind's own keys of settings (the others
// are reported as foreign) strictly into a new value of t, reporting every
// problem on its key below key.
func decodeOwn(key string, settings tools.Settings, t reflect.Type, fail func(key, format string, args ...any)) {
	if t == nil || len(settings) == 0 {
		return
	}
	own := tools.Settings{}
	for _, k := range tools.SettingKeys(t) {
		if v, ok := settings[k]; ok {
			own[k] = v
		}
	}
	err := tools.DecodeSettingsAt(own, reflect.New(t).Interface(), key)
	var errs tools.SettingErrors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fail(e.Key, "%s", e.Msg)
		}
	} else if err != nil {
		fail(key, "%v", err)
	}
}

// minKubernetesTokenTTL is the shortest token a kube-apiserver issues.
const minKubernetesTokenTTL = 600 // seconds

var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	placeholder  = regexp.MustCompile(`\{\{\s*([^}]*?)\s*\}\}`)
	kindSentinel = regexp.MustCompile(`^invalid [a-z]+ resource configuration: |: invalid [a-z]+ resource configuration$`)
)

func (c *Config) validateResources(fail func(key, format string, args ...any)) {
	seen := map[string]int{}
	for i, r := range c.Resources {
		key := fmt.Sprintf("resources[%d]", i)
		switch {
		case r.Name == "":
			fail(key+".name", "is required: the name agents and policy use for the resource")
		case !validName(r.Name):
			fail(key+".name", "%q may contain only letters, digits, '-', '_' and '.'", r.Name)
		}
		if j, dup := seen[r.Name]; dup && r.Name != "" {
			fail(key+".name", "%q is already the name of resources[%d]", r.Name, j)
		} else {
			seen[r.Name] = i
		}
		if r.Mask != "" {
			if _, ok := c.Masking.Profiles[r.Mask]; !ok {
				fail(key+".mask", "profile %q is not defined (profiles: %s)", r.Mask, strings.Join(slices.Sorted(maps.Keys(c.Masking.Profiles)), ", "))
			}
		}
		if len(r.Grants) == 0 {
			fail(key+".grants", "at least one grant is required: a named set of privileges a policy rule can hand out")
		}
		registered, isRegistered := tools.RegisteredSettings(r.Kind)
		switch r.Kind {
		case "":
			fail(key+".kind", "is required (one of %s)", strings.Join(knownKinds(), ", "))
			continue
		case "postgres", "ssh", "kubernetes":
		default:
			// A kind that did not register its settings can still be
			// listed in KnownKinds: its Open alone checks them then.
			if !isRegistered && !slices.Contains(KnownKinds, r.Kind) {
				fail(key+".kind", "%q is not one of %s", r.Kind, strings.Join(knownKinds(), ", "))
				continue
			}
		}
		for _, fs := range r.ForeignSettings(r.Kind) {
			if fs.Kind == "" {
				valid := resourceKeys(r.Kind)
				fail(key+"."+fs.Key, "unknown key%s; valid keys in %s: %s", tools.Suggest(fs.Key, valid), key, strings.Join(valid, ", "))
				continue
			}
			fail(key+"."+fs.Key, "is %s, not valid for kind %s; %s resources take %s", fs.OwnerPhrase(), r.Kind, r.Kind, settingsPhrase(r.Kind))
		}
		if isRegistered {
			unclaimed(key, r.Settings, resourceKeys(r.Kind), false, fail)
			decodeOwn(key, r.Settings, registered.Resource, fail)
		}
		for _, name := range slices.Sorted(maps.Keys(r.Grants)) {
			validateGrant(r.Kind, key+".grants."+name, r.Grants[name], fail)
		}
		switch r.Kind {
		case "postgres":
			exactlyOne(key, fail, "the admin connection string (a role with CREATEROLE): admin_dsn_env names an environment variable holding it, admin_dsn_file a file",
				setting{"admin_dsn_env", r.AdminDSNEnv != ""}, setting{"admin_dsn_file", r.AdminDSNFile != ""})
		case "ssh":
			validateSSH(key, r, fail)
		case "kubernetes":
			exactlyOne(key, fail, "airlock's own credential: kubeconfig_file (a path), or in_cluster: true when airlock runs in a pod",
				setting{"kubeconfig_file", r.KubeconfigFile != ""}, setting{"in_cluster", r.InCluster})
		}
	}
}

type setting struct {
	key string
	set bool
}

// exactlyOne reports a resource that sets none, or more than one, of
// settings that exclude each other.
func exactlyOne(key string, fail func(key, format string, args ...any), what string, settings ...setting) {
	var set, names []string
	for _, s := range settings {
		names = append(names, s.key)
		if s.set {
			set = append(set, s.key)
		}
	}
	switch len(set) {
	case 0:
		fail(key, "needs %s", what)
	case 1:
	default:
		fail(key+"."+set[1], "set only one of %s, not both %s and %s", strings.Join(names, ", "), set[0], set[1])
	}
}

func validateGrant(kind, key string, g tools.Grant, fail func(key, format string, args ...any)) {
	for _, s := range g.ForeignSettings(kind) {
		if s.Kind == "" {
			valid := grantFieldKeys(kind)
			fail(key+"."+s.Key, "unknown key%s; valid keys in %s: %s", tools.Suggest(s.Key, valid), key, strings.Join(valid, ", "))
			continue
		}
		fail(key+"."+s.Key, "is a %s grant setting, not valid for kind %s; %s grants take %s", s.Kind, kind, kind, grantPhrase(kind))
	}
	if ks, ok := tools.RegisteredSettings(kind); ok {
		unclaimed(key, g.Settings, grantFieldKeys(kind), true, fail)
		decodeOwn(key, g.Settings, ks.Grant, fail)
	}
	if g.TTL <= 0 {
		fail(key+".ttl", "is required: how long a lease under this grant lives, for example 10m")
	}
	switch kind {
	case "postgres":
		if len(g.Roles) == 0 {
			fail(key+".roles", "is required: the PostgreSQL roles a minted role joins, for example [app_readonly]")
		}
		for i, r := range g.Roles {
			if strings.TrimSpace(r) == "" {
				fail(fmt.Sprintf("%s.roles[%d]", key, i), "is empty")
			}
		}
		if g.Access != "" && g.Access != tools.AccessReadOnly && g.Access != tools.AccessReadWrite {
			fail(key+".access", "%q is not one of read_only, read_write", g.Access)
		}
	case "ssh":
		if len(g.Principals) == 0 {
			fail(key+".principals", "is required: the certificate's principals, for example [ops]; the first is the remote user")
		}
		for i, p := range g.Principals {
			if p == "" || strings.ContainsAny(p, ", \t\r\n") {
				fail(fmt.Sprintf("%s.principals[%d]", key, i), "%q is not a principal: principals are names without commas or spaces", p)
			}
		}
	case "kubernetes":
		switch {
		case g.ServiceAccount != "" && g.Impersonate != nil:
			fail(key, "set service_account or impersonate, not both")
		case g.ServiceAccount == "" && g.Impersonate == nil:
			fail(key, "needs service_account (a ServiceAccount to mint tokens for, for example airlock/viewer) or impersonate (for example {user: \"oidc:{{identity.subject}}\"})")
		case g.ServiceAccount != "":
			ns, name, ok := strings.Cut(g.ServiceAccount, "/")
			if !ok || !dnsLabel.MatchString(ns) || !dnsSubdomain.MatchString(name) {
				fail(key+".service_account", "%q is not NAMESPACE/NAME of a ServiceAccount, for example airlock/viewer", g.ServiceAccount)
			}
			if g.TTL > 0 && g.TTL.Seconds() < minKubernetesTokenTTL {
				fail(key+".ttl", "%s is too short: the API server refuses tokens shorter than 10m", g.TTL)
			}
		default:
			if strings.TrimSpace(g.Impersonate.User) == "" {
				fail(key+".impersonate.user", "is required: the user requests act as, for example \"oidc:{{identity.subject}}\"")
			} else if msg := checkTemplate(g.Impersonate.User); msg != "" {
				fail(key+".impersonate.user", "%s", msg)
			}
			for i, grp := range g.Impersonate.Groups {
				if msg := checkTemplate(grp); strings.TrimSpace(grp) == "" || msg != "" {
					fail(fmt.Sprintf("%s.impersonate.groups[%d]", key, i), "%s", cmp(msg, "is empty"))
				}
			}
		}
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkTemplate checks the {{identity.subject}} / {{identity.email}}
// placeholders of an impersonation template.
func checkTemplate(s string) string {
	for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
		if m[1] != "identity.subject" && m[1] != "identity.email" {
			return fmt.Sprintf("%q: unknown placeholder {{%s}}; only {{identity.subject}} and {{identity.email}} are expanded", s, m[1])
		}
	}
	if rest := placeholder.ReplaceAllString(s, ""); strings.Contains(rest, "{{") || strings.Contains(rest, "}}") {
		return fmt.Sprintf("%q: unbalanced {{ }}", s)
	}
	return ""
}

func validateSSH(key string, r tools.ResourceSpec, fail func(key, format string, args ...any)) {
	if r.Address == "" {
		fail(key+".address", "is required: the host's host:port, for example 10.0.0.5:22")
	} else if host, port, err := net.SplitHostPort(r.Address); err != nil || host == "" {
		fail(key+".address", "%q is not host:port, for example 10.0.0.5:22", r.Address)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		fail(key+".address", "port %q is not a number from 1 to 65535", port)
	}
	exactlyOne(key, fail, "the host's identity, which is always verified: host_key (its public key), host_ca (the CA that signs host keys) or known_hosts_file",
		setting{"host_key", r.HostKey != ""}, setting{"host_ca", r.HostCA != ""}, setting{"known_hosts_file", r.KnownHostsFile != ""})
	for _, k := range []struct{ key, value string }{{"host_key", r.HostKey}, {"host_ca", r.HostCA}} {
		if k.value == "" {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.value))
		if err != nil {
			fail(key+"."+k.key, "is not a public key in authorized_keys format (for example \"ssh-ed25519 AAAA...\")")
			continue
		}
		if _, isCert := pub.(*ssh.Certificate); isCert && k.key == "host_key" {
			fail(key+".host_key", "is a certificate; put the host key here, or the CA that signed it in host_ca")
		}
	}
	exactlyOne(key, fail, "airlock's user CA key, which signs a certificate per call: ca_key_file (a path) or ca_key_env (an environment variable)",
		setting{"ca_key_file", r.CAKeyFile != ""}, setting{"ca_key_env", r.CAKeyEnv != ""})
	for i, s := range r.SourceAddress {
		if _, _, err := net.ParseCIDR(s); err != nil && net.ParseIP(s) == nil {
			fail(fmt.Sprintf("%s.source_address[%d]", key, i), "%q is neither an IP address nor a CIDR block (for example 10.0.0.0/8)", s)
		}
	}
	if r.MaxSessions < 0 {
		fail(key+".max_sessions", "%d is negative; use a positive number, or leave it out for the default", r.MaxSessions)
	}
	if r.Shell != "" && !validShell(r.Shell) {
		fail(key+".shell", "%q is not the absolute path of bash (for example /bin/bash): every command runs under bash, whatever the account's login shell", r.Shell)
	}
}

func validShell(p string) bool {
	if !strings.HasPrefix(p, "/") || path.Base(p) != "bash" {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._+-", c)) {
			return false
		}
	}
	return true
}

// ResourceError turns the error a kind returned when it opened resource i
// into an Error with the resource's key and line, in one sentence: the
// kinds' own prefixes ("invalid ssh resource configuration", "resource
// web:") are dropped, and a leading setting name ("ca_key_file: ...")
// becomes the key.
func (c *Config) ResourceError(i int, err error) *Error {
	key := fmt.Sprintf("resources[%d]", i)
	name := c.Resources[i].Name
	msg := err.Error()
	// The kinds' sentinels ("invalid ssh resource configuration"), at
	// either end.
	msg = kindSentinel.ReplaceAllString(msg, "")
	for {
		rest, ok := strings.CutPrefix(msg, "resource "+name+": ")
		if !ok {
			break
		}
		msg = rest
	}
	if k, rest, ok := strings.Cut(msg, ": "); ok && resourceKey(c.Resources[i], k) {
		key, msg = key+"."+k, rest
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && !strings.Contains(msg, pe.Path) {
		msg = fmt.Sprintf("%s (%s)", msg, pe.Path)
	}
	return c.errorAt(key, msg)
}

// resourceKey reports whether k is a setting of resource r (a field, or a
// key of its kind's Settings), or a path into one ("grants.ro.ttl",
// "tls.ca_file").
func resourceKey(r tools.ResourceSpec, k string) bool {
	first, _, _ := strings.Cut(k, ".")
	first, _, _ = strings.Cut(first, "[")
	if _, ok := r.Settings[first]; ok {
		return true
	}
	return slices.Contains(tools.SettingKeys(resourceSpecType), first)
}

// grantFieldKeys lists the keys a grant of kind may have: for the built-in
// kinds every field of Grant (as the decoder has always said), for a
// registered kind ttl and its own.
func grantFieldKeys(kind string) []string {
	if _, ok := tools.RegisteredSettings(kind); ok {
		return append([]string{"ttl"}, ownKeys(kind, true)...)
	}
	return tools.SettingKeys(grantType)
}

var (
	resourceSpecType = reflect.TypeFor[tools.ResourceSpec]()
	grantType        = reflect.TypeFor[tools.Grant]()
)
