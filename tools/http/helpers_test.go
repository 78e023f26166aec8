package httpkind

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// mapEnv is a tools.Environment backed by maps, falling back to nothing.
type mapEnv struct {
	vars  map[string]string
	files map[string]string
}

func (e mapEnv) Getenv(name string) (string, bool) { v, ok := e.vars[name]; return v, ok }
func (e mapEnv) ReadFile(path string) ([]byte, error) {
	if v, ok := e.files[path]; ok {
		return []byte(v), nil
	}
	return os.ReadFile(path)
}

// specFromYAML reads one resource entry the way the config does: the
// common keys into ResourceSpec (and ttl into each Grant), every other key
// into Settings.
func specFromYAML(t testing.TB, src string) tools.ResourceSpec {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(src), &m); err != nil {
		t.Fatalf("resource yaml: %v", err)
	}
	spec := tools.ResourceSpec{Settings: tools.Settings{}, Grants: map[string]tools.Grant{}}
	for k, v := range m {
		switch k {
		case "name":
			spec.Name = v.(string)
		case "kind":
			spec.Kind = v.(string)
		case "grants":
			for name, gv := range v.(map[string]any) {
				g := tools.Grant{Settings: tools.Settings{}}
				for gk, x := range gv.(map[string]any) {
					if gk == "ttl" {
						d, err := time.ParseDuration(x.(string))
						if err != nil {
							t.Fatal(err)
						}
						g.TTL = d
						continue
					}
					g.Settings[gk] = plain(x)
				}
				spec.Grants[name] = g
			}
		default:
			spec.Settings[k] = plain(v)
		}
	}
	if spec.Kind == "" {
		spec.Kind = KindName
	}
	return spec
}

// plain converts decoded YAML to the value types tools.Settings holds.
func plain(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range t {
			out[k] = plain(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = plain(e)
		}
		return out
	case uint64:
		return int64(t)
	case int:
		return int64(t)
	}
	return v
}

// open opens a resource from YAML with the kind's options.
func open(t testing.TB, env tools.Environment, src string, opts ...Option) *Resource {
	t.Helper()
	r, err := NewKind(opts...).Open(specFromYAML(t, src), env)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(r.Close)
	return r.(*Resource)
}

func mint(t testing.TB, r *Resource, grant string) *Credential {
	t.Helper()
	c, err := r.Mint(context.Background(), tools.MintRequest{
		LeaseID: "lease-" + grant + "-" + fmt.Sprint(time.Now().UnixNano()), GrantName: grant,
		Identity: policy.Identity{Subject: "alice", Method: "oidc"}, CallID: "call-1",
		Expires: time.Now().Add(10 * time.Minute),
	})
	if err != nil {
		t.Fatalf("Mint %s: %v", grant, err)
	}
	return c.(*Credential)
}

var testLimits = tools.Limits{MaxRows: 500, MaxBytes: 1 << 20, Timeout: 20 * time.Second}

// call decodes args and executes them, unmasked.
func call(t testing.TB, r *Resource, c *Credential, limits tools.Limits, args string) (*tools.Output, error) {
	t.Helper()
	a, err := (&Request{}).Decode(json.RawMessage(args))
	if err != nil {
		t.Fatalf("Decode(%s): %v", args, err)
	}
	return (&Request{}).Execute(context.Background(), tools.Target{Resource: r, Credential: c, Limits: limits, CallID: "call-1"}, a)
}

// maskAndRender masks out the way the broker does (broker/mask.go: objects
// with MaskObject, streams with MaskText, Extra as JSON through
// MaskObject) with the named profile of cfg, and renders it.
func maskAndRender(t testing.TB, cfg masking.Config, profile string, out *tools.Output) (*Result, string) {
	t.Helper()
	eng, err := masking.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := eng.Profile(profile)
	if !ok {
		t.Fatalf("no masking profile %s", profile)
	}
	for i, o := range out.Objects {
		m, _, err := p.MaskObject(o)
		if err != nil {
			t.Fatalf("MaskObject: %v", err)
		}
		out.Objects[i] = m
	}
	if s := out.Streams; s != nil {
		m, _, err := p.MaskText(s.Stdout)
		if err != nil {
			t.Fatal(err)
		}
		s.Stdout = m
	}
	raw, _ := json.Marshal(out.Extra)
	var extra map[string]any
	_ = json.Unmarshal(raw, &extra)
	m, _, err := p.MaskObject(extra)
	if err != nil {
		t.Fatal(err)
	}
	out.Extra, _ = m.(map[string]any)
	res, text := (&Request{}).Render(out)
	return res.(*Result), text
}

// scriptedResolver answers lookups from a script, one answer per call (the
// last repeats), and counts them.
type scriptedResolver struct {
	mu      sync.Mutex
	answers [][]netip.Addr
	calls   int
}

func newScriptedResolver(answers ...string) *scriptedResolver {
	r := &scriptedResolver{}
	for _, a := range answers {
		var addrs []netip.Addr
		for _, s := range strings.Split(a, ",") {
			addrs = append(addrs, netip.MustParseAddr(s))
		}
		r.answers = append(r.answers, addrs)
	}
	return r
}

func (r *scriptedResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := min(r.calls, len(r.answers)-1)
	r.calls++
	return r.answers[i], nil
}

func (r *scriptedResolver) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func mustContain(t testing.TB, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func mustNotContain(t testing.TB, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			t.Errorf("%s contains %q:\n%s", what, sub, s)
		}
	}
}

func (c *Credential) leaseIDForTest() string { return c.leaseID }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
