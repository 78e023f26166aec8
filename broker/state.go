package broker

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// BuildState compiles a config into the state calls run against: it loads
// and checks the policy, builds the masking engine and opens every resource
// with its kind. prev, if not nil, is the state being replaced: resources
// whose configuration did not change are carried over, not reopened.
// Nothing here contacts a backend.
//
// A resource its kind cannot open (a secret that is not set, a key file
// that does not parse) does not stop the others: it is in the state as an
// *Unavailable that says why, and its calls are refused with that reason.
// Callers that want all or nothing check State.Unavailable.
func BuildState(cfg *config.Config, kinds map[string]tools.Kind, prev *State) (*State, error) {
	env := config.OSEnvironment{Dir: cfg.Dir}

	hashKey, err := config.Secret(env, "masking.hash_key", cfg.Masking.HashKeyEnv, cfg.Masking.HashKeyFile)
	if err != nil {
		return nil, err
	}
	engine, err := masking.New(cfg.Masking, hashKey)
	if err != nil {
		return nil, fmt.Errorf("masking: %w", err)
	}

	resources := map[string]tools.Resource{}
	for i, spec := range cfg.Resources {
		if prev != nil {
			if old, ok := prev.Resources[spec.Name]; ok && reflect.DeepEqual(old.Spec(), spec) && !IsUnavailable(old) {
				resources[spec.Name] = old
				continue
			}
		}
		kind, ok := kinds[spec.Kind]
		if !ok {
			resources[spec.Name] = &Unavailable{spec: spec, Reason: fmt.Sprintf("kind %q is not one of %s", spec.Kind, strings.Join(kindNames(kinds), ", "))}
			continue
		}
		res, err := kind.Open(spec, env)
		if err != nil {
			e := cfg.ResourceError(i, err)
			reason := e.Msg
			if setting := strings.TrimPrefix(e.Key, fmt.Sprintf("resources[%d].", i)); setting != e.Key {
				reason = setting + ": " + reason
			}
			resources[spec.Name] = &Unavailable{spec: spec, Reason: reason}
			continue
		}
		resources[spec.Name] = res
	}

	pol, err := policy.Load(cfg.Path(cfg.Policy))
	if err != nil {
		closeNew(resources, prev)
		return nil, err
	}
	grantExists := func(g string) bool {
		for _, r := range resources {
			if _, ok := r.Spec().Grants[g]; ok {
				return true
			}
		}
		return false
	}
	maskExists := func(p string) bool { _, ok := engine.Profile(p); return ok }
	if err := pol.Check(grantExists, maskExists); err != nil {
		closeNew(resources, prev)
		return nil, err
	}
	for _, r := range resources {
		if m := r.Spec().Mask; m != "" && !maskExists(m) {
			closeNew(resources, prev)
			return nil, fmt.Errorf("resource %s: mask profile %q is not defined (profiles: %s)", r.Spec().Name, m, strings.Join(engine.ProfileNames(), ", "))
		}
	}
	if _, ok := engine.Profile(DefaultMaskProfile); !ok {
		closeNew(resources, prev)
		return nil, fmt.Errorf("masking: the %q profile must exist: it masks output no rule names a profile for", DefaultMaskProfile)
	}

	return &State{
		Policy:    pol,
		Resources: resources,
		Masking:   engine,
		Limits: tools.Limits{
			MaxRows:  cfg.Limits.MaxRows,
			MaxBytes: cfg.Limits.MaxBytes,
			Timeout:  cfg.Limits.Timeout,
		},
	}, nil
}

// retire revokes the leases of old's resources that next removed or
// changed, then closes those resources.
func (b *Broker) retire(old, next *State) {
	for name, r := range old.Resources {
		if n, ok := next.Resources[name]; !ok || n != r {
			b.cfg.Leases.RevokeResource(context.Background(), r)
			r.Close()
		}
	}
}

// Close closes every resource of the state.
func (s *State) Close() {
	for _, r := range s.Resources {
		r.Close()
	}
}

// closeNew closes resources opened for a state that will not be used,
// leaving those carried over from prev alone.
func closeNew(resources map[string]tools.Resource, prev *State) {
	for name, r := range resources {
		if prev != nil && prev.Resources[name] == r {
			continue
		}
		r.Close()
	}
}

func kindNames(kinds map[string]tools.Kind) []string {
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
