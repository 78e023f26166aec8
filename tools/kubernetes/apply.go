package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// kubectl_apply: server-side apply of one manifest.
//
//	Decode   {resource, manifest} → *ApplyArgs: no control or format
//	         characters (bidi overrides, zero-width) in the text, which
//	         approvers read; the text is split into YAML
//	         documents and each is parsed strictly (duplicate keys are an
//	         error); what is sent to the API server is the parsed object as
//	         JSON, so the server applies exactly what the facts describe
//	Facts    one document of a kind the static table knows, with a
//	         metadata.name: else refused before policy (opaque: several
//	         documents, a List, generateName, an unknown kind; invalid: a
//	         Secret, a version not shaped like v1, a metadata.namespace on a
//	         cluster-wide kind). A cluster-wide kind has namespace "" in the
//	         facts, and Preview and Execute refuse it unless the resource's
//	         cluster_scoped_writes lists it (clusterWriteCheck, writes.go).
//	         verb patch (server-side apply is a PATCH; the API server also
//	         asks RBAC for create when the object does not exist),
//	         fields_changed = every field the manifest sets and those the
//	         API server derives from them (derivedFields)
//	Preview  under a token minted for the grant's ServiceAccount: GET the
//	         live object, PATCH ?dryRun=All, and show the field-by-field
//	         difference (managedFields, resourceVersion and the like
//	         stripped; what a read would mask masked, live values too;
//	         characters escaped, long values cut visibly; a difference of
//	         more than 200 lines is no preview rather than a part of one)
//	Execute  PATCH application/apply-patch+yaml ?fieldManager=airlock, never
//	         force: a field another manager owns is a conflict, refused

// FieldManager is the field manager airlock applies and patches as.
const FieldManager = "airlock"

// maxManifest bounds kubectl_apply's manifest.
const maxManifest = 256 << 10

// Bounds of the dry-run diff shown to approvers.
const (
	maxDiffLines = 200
	maxDiffValue = 480
)

var (
	_ tools.Tool      = (*Apply)(nil)
	_ tools.Previewer = (*Apply)(nil)
	_ tools.Args      = (*ApplyArgs)(nil)
)

// Apply is kubectl_apply.
type Apply struct{}

// ApplyArgs are kubectl_apply's decoded arguments. The documents are what
// Decode parsed; only Resource and Manifest are the arguments.
type ApplyArgs struct {
	Resource string `json:"resource"`
	Manifest string `json:"manifest"`

	docs []map[string]any
}

func (a *ApplyArgs) ResourceName() string       { return a.Resource }
func (a *ApplyArgs) Canonical() json.RawMessage { return canonical(a) }

func (*Apply) Name() string   { return "kubectl_apply" }
func (*Apply) Kind() string   { return KindName }
func (*Apply) ReadOnly() bool { return false }

func (*Apply) Description() string {
	return `Create or update one Kubernetes object from a manifest through Airlock, like "kubectl apply --server-side": give the manifest (YAML or JSON) of exactly one object, with apiVersion, kind, metadata.name and metadata.namespace ("default" when left out).
Only the fields you write are set, owned by the field manager "airlock"; fields another manager owns are a conflict, reported and not overwritten. Built-in kinds only (Deployment, ConfigMap, Service, Job, ...); no Secrets, no lists, no generateName. Cluster-wide kinds (ClusterRole, Namespace, ...; no metadata.namespace) only on clusters whose Airlock configuration allows that kind; others are refused.
Writes are usually held for a human's approval; the approver sees the server's dry-run difference against the live object.`
}

func (*Apply) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the Kubernetes cluster, as configured in Airlock (list_resources shows the ones you may use)."},
    "manifest": {"type": "string", "minLength": 1, "maxLength": 262144, "description": "The manifest of one object, YAML or JSON, as you would give to kubectl apply -f."}
  },
  "required": ["resource", "manifest"],
  "additionalProperties": false
}`)
}

// Decode parses the manifest strictly into its documents.
func (*Apply) Decode(raw json.RawMessage) (tools.Args, error) {
	d, err := newDecoder("kubectl_apply", raw, []string{"resource", "manifest"})
	if err != nil {
		return nil, err
	}
	a := &ApplyArgs{}
	if err := d.str("resource", &a.Resource); err != nil {
		return nil, err
	}
	if v, ok := d.fields["manifest"]; ok {
		if err := json.Unmarshal(v, &a.Manifest); err != nil {
			return nil, invalid("manifest must be a string: the YAML or JSON of one object")
		}
	}
	switch {
	case a.Resource == "":
		return nil, invalid("resource is required: the name of a Kubernetes cluster (see list_resources)")
	case strings.TrimSpace(a.Manifest) == "":
		return nil, invalid("manifest is required: the YAML or JSON of one object")
	case len(a.Manifest) > maxManifest:
		return nil, invalid("manifest is %d bytes; at most %d", len(a.Manifest), maxManifest)
	}
	// The approval page shows the manifest as text: a bidi override or a
	// zero-width character (in a comment, a key, a value) would make it
	// read otherwise than it parses.
	if i := strings.IndexFunc(a.Manifest, invisible); i >= 0 {
		r, _ := utf8.DecodeRuneInString(a.Manifest[i:])
		return nil, invalid("the manifest holds an invisible or control character (U+%04X at byte %d), which would make it read otherwise than it is applied; remove it", r, i)
	}
	a.docs, err = parseManifest(a.Manifest)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// invisible is a control character other than tab and line ends, or a
// format character (bidi overrides and isolates, zero-width spaces and
// joiners, the byte-order mark).
func invisible(r rune) bool {
	switch r {
	case '\t', '\n', '\r':
		return false
	}
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError
}

// parseManifest splits text into YAML documents and parses each strictly
// (duplicate keys are refused: two parsers could disagree on which wins).
// Empty documents (comments only) are dropped.
func parseManifest(text string) ([]map[string]any, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	var docs []map[string]any
	for i := 1; ; i++ {
		chunk, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, invalid("manifest is not YAML: %v", err)
		}
		js, err := yaml.YAMLToJSONStrict(chunk)
		if err != nil {
			return nil, invalid("manifest document %d is not valid YAML: %v", i, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		var doc map[string]any
		if err := decodeJSON(js, &doc); err != nil {
			return nil, invalid("manifest document %d is not an object (a mapping with apiVersion, kind and metadata)", i)
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 {
		return nil, invalid("manifest holds no object")
	}
	return docs, nil
}

// manifestTarget is what a manifest names: its kind (from the table), the
// manifest's version, the namespace and name.
type manifestTarget struct {
	res       apiResource
	namespace string
	name      string
	obj       map[string]any
}

// target checks the manifest is one object of a table kind that the facts
// can describe completely.
func (a *ApplyArgs) target() (*manifestTarget, error) {
	if len(a.docs) != 1 {
		return nil, tools.Opaque("the manifest holds %d documents; kubectl_apply applies one object per call, so that policy and the approver see each", len(a.docs))
	}
	obj := a.docs[0]
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if apiVersion == "" || kind == "" {
		return nil, invalid("the manifest needs apiVersion and kind")
	}
	if kind == "List" || strings.HasSuffix(kind, "List") {
		return nil, tools.Opaque("the manifest is a %s; kubectl_apply applies one object per call", kind)
	}
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok {
		group, version = "", apiVersion
	}
	// The version goes into the request's path: only a version's shape
	// (v1, v2beta1), never "v1/../..", which would send the patch elsewhere
	// than the facts name.
	if !versionRE.MatchString(version) {
		return nil, invalid("apiVersion %q is not GROUP/VERSION with a version such as v1 or v1beta1", apiVersion)
	}
	var found *apiResource
	for i := range wellKnown {
		if wellKnown[i].Group == group && wellKnown[i].Kind == kind {
			found = &wellKnown[i]
			break
		}
	}
	if found == nil {
		return nil, tools.Opaque("kubectl_apply writes only built-in kinds airlock knows by name; %s %s is not one, so policy could not be told what it would change", apiVersion, kind)
	}
	if found.GroupResource() == "secrets" {
		return nil, invalid("kubectl_apply does not apply Secrets: their values would travel in the call's arguments and its transcript; create Secrets with your secret tooling")
	}
	meta, _ := obj["metadata"].(map[string]any)
	if _, ok := meta["generateName"]; ok {
		return nil, tools.Opaque("the manifest uses metadata.generateName: the object's name is chosen by the server, so policy could not be told which object it creates; give metadata.name")
	}
	name, _ := meta["name"].(string)
	if name == "" {
		return nil, invalid("the manifest needs metadata.name")
	}
	ns, _ := meta["namespace"].(string)
	if err := checkCommon(a.Resource, found.Resource, ns, name); err != nil {
		return nil, err
	}
	switch {
	case !found.Namespaced && ns != "":
		// The API server would drop it; an approver reading it could
		// take the object for a namespaced one.
		return nil, invalid("%s is cluster-wide: leave metadata.namespace out (the object is in no namespace)", found.GroupResource())
	case found.Namespaced && ns == "":
		ns = "default"
	}
	r := *found
	r.Version = version
	return &manifestTarget{res: r, namespace: ns, name: name, obj: obj}, nil
}

// Facts: a patch (server-side apply) of one object, the fields it sets.
func (*Apply) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*ApplyArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("kubectl_apply: unexpected arguments %T", args)
	}
	t, err := a.target()
	if err != nil {
		return policy.Facts{}, err
	}
	return policy.Facts{K8s: &policy.K8s{
		Verb: "patch", Group: t.res.Group, Version: t.res.Version, Resource: t.res.Resource, Kind: t.res.Kind,
		Namespace: t.namespace, Name: t.name, FieldsChanged: manifestFields(t.obj),
	}}, nil
}

// manifestFields lists the fields a manifest sets, as dotted paths, leaving
// out the ones that only name the object.
func manifestFields(obj map[string]any) []string {
	flat := map[string]string{}
	flatten("", obj, flat)
	out := make([]string, 0, len(flat))
	for p := range flat {
		switch p {
		case "apiVersion", "kind", "metadata.name", "metadata.namespace":
			continue
		}
		out = append(out, p)
	}
	out = append(out, derivedFields(flat)...)
	sort.Strings(out)
	return slices.Compact(out)
}

// appArmorAnnotation is the deprecated annotation the API server still
// turns into a container's securityContext.appArmorProfile when a pod is
// created (from a pod template too, when the controller creates the pod).
const appArmorAnnotation = "metadata.annotations.container.apparmor.security.beta.kubernetes.io/"

// derivedFields are the fields the API server sets from others a manifest
// sets, so that a policy written on a field sees it however it is reached:
//
//   - a pod spec's serviceAccount (the deprecated alias) sets its
//     serviceAccountName: PREFIX.spec.serviceAccount gives
//     PREFIX.spec.serviceAccountName;
//   - PREFIX.metadata.annotations.container.apparmor.security.beta.kubernetes.io/C
//     sets container C's AppArmor profile: it gives
//     PREFIX.spec.containers[name=C].securityContext.appArmorProfile.
func derivedFields(flat map[string]string) []string {
	var out []string
	for p := range flat {
		if i := strings.Index(p, "spec.serviceAccount"); i >= 0 && (i == 0 || p[i-1] == '.') {
			rest := p[i+len("spec.serviceAccount"):]
			if rest == "" || strings.HasPrefix(rest, ".") {
				out = append(out, p[:i]+"spec.serviceAccountName")
			}
		}
		if i := strings.Index(p, appArmorAnnotation); i >= 0 && (i == 0 || p[i-1] == '.') {
			container := p[i+len(appArmorAnnotation):]
			out = append(out, p[:i]+"spec.containers[name="+container+"].securityContext.appArmorProfile")
		}
	}
	return out
}

// flatten writes the leaves of v under prefix into out, values as JSON.
// Lists of objects with distinct names are keyed by them ([name=app]), as
// server-side apply merges most of them; other lists by index.
func flatten(prefix string, v any, out map[string]string) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 && prefix != "" {
			out[prefix] = "{}"
		}
		for k, sub := range t {
			flatten(join(k), sub, out)
		}
	case []any:
		if len(t) == 0 {
			out[prefix] = "[]"
		}
		// Keyed by name only when every item has one and no two share
		// it: names need not be unique (volumeMounts merge on mountPath),
		// and two items under one key would show as one.
		named := len(t) > 0
		seen := map[string]bool{}
		for _, e := range t {
			m, ok := e.(map[string]any)
			name, has := m["name"].(string)
			if !ok || !has || seen[name] {
				named = false
			}
			seen[name] = true
		}
		for i, e := range t {
			key := fmt.Sprintf("%s[%d]", prefix, i)
			if named {
				key = fmt.Sprintf("%s[name=%s]", prefix, e.(map[string]any)["name"])
			}
			flatten(key, e, out)
		}
	default:
		// Not json.Marshal: it writes < > & as \u003c \u003e \u0026,
		// which would make a command harder to read on the approval page.
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(t)
		out[prefix] = string(bytes.TrimRight(b.Bytes(), "\n"))
	}
}

// applyQuery is the query of an apply: airlock's field manager, never
// forced; dry run for a preview.
func applyQuery(dryRun bool) url.Values {
	q := url.Values{"fieldManager": {FieldManager}, "force": {"false"}}
	if dryRun {
		q.Set("dryRun", "All")
	}
	return q
}

// apply sends the server-side apply (the parsed object as JSON, which is
// YAML) and returns the object the server answers with.
func (c *call) apply(ctx context.Context, m *apiResource, t *manifestTarget, dryRun bool) (map[string]any, error) {
	body, err := json.Marshal(t.obj)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.send(ctx, http.MethodPatch, objectPath(m, t.namespace, t.name), applyQuery(dryRun), acceptJSON, "application/apply-patch+yaml", body, maxResponse)
	if err != nil {
		mapped := c.requestError(ctx, err, m, t.namespace, t.name)
		if errors.Is(mapped, ErrConflict) {
			return nil, fmt.Errorf("%w: %s; airlock never forces: leave those fields out of the manifest, or have their manager change them", ErrConflict, strings.TrimPrefix(mapped.Error(), ErrConflict.Error()+": "))
		}
		return nil, mapped
	}
	var out map[string]any
	if err := decodeJSON(resp, &out); err != nil {
		return nil, fmt.Errorf("reading the API server's answer: %w", err)
	}
	return out, nil
}

// begin resolves the manifest's kind through discovery (it must be the
// table's kind, as for every call) and serves it at the manifest's version.
func (a *ApplyArgs) begin(ctx context.Context, target tools.Target) (context.Context, context.CancelFunc, *call, *apiResource, *manifestTarget, error) {
	t, err := a.target()
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	if err := clusterWriteCheck("kubectl_apply", target.Resource, t.res.GroupResource(), t.res.Namespaced); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	ctx, cancel, c, m, err := begin(ctx, "kubectl_apply", target, t.res.GroupResource())
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	if err := clusterWriteCheck("kubectl_apply", target.Resource, m.GroupResource(), m.Namespaced); err != nil {
		cancel()
		return nil, nil, nil, nil, nil, err
	}
	mv := *m
	mv.Version = t.res.Version
	return ctx, cancel, c, &mv, t, nil
}

// Execute applies the manifest with airlock's field manager.
func (*Apply) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*ApplyArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_apply: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	start := time.Now()
	ctx, cancel, c, m, t, err := a.begin(ctx, target)
	if err != nil {
		return nil, err
	}
	defer cancel()
	obj, err := c.apply(ctx, m, t, false)
	if err != nil {
		return nil, err
	}
	stripObject(obj, m.apiVersion(), m.Kind)
	return &tools.Output{
		Objects:  []any{obj},
		Duration: time.Since(start),
		Extra: map[string]any{
			"tool": "kubectl_apply", "kind": m.Kind, "resource": m.GroupResource(), "namespace": t.namespace, "name": t.name,
			"field_manager": FieldManager,
		},
	}, nil
}

// Render names the object applied and shows it as the server stored it.
func (*Apply) Render(out *tools.Output) (any, string) {
	res := writeResult(out)
	var b strings.Builder
	b.WriteString(res.Object + " applied (server-side, field manager " + FieldManager + ")\n")
	if res.Result != nil {
		writeYAML(&b, []any{res.Result}, true)
	}
	return res, strings.TrimRight(b.String(), "\n")
}

// Preview runs the apply as a server-side dry run under the grant's
// privileges and shows the difference from the live object.
func (*Apply) Preview(ctx context.Context, pt tools.PreviewTarget, args tools.Args, _ policy.Facts) (*tools.Impact, error) {
	a, ok := args.(*ApplyArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_apply: unexpected arguments %T", args)
	}
	start := time.Now()
	// Refused before a token is minted for the preview.
	if t, err := a.target(); err != nil {
		return nil, err
	} else if err := clusterWriteCheck("kubectl_apply", pt.Resource, t.res.GroupResource(), t.res.Namespaced); err != nil {
		return nil, err
	}
	ctx, stop, target, handle, err := previewTarget(ctx, pt)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx, cancel, c, m, t, err := a.begin(ctx, target)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var live map[string]any
	body, err := c.client.do(ctx, http.MethodGet, objectPath(m, t.namespace, t.name), nil, acceptJSON, nil, maxResponse)
	switch {
	case err == nil:
		if err := decodeJSON(body, &live); err != nil {
			return nil, fmt.Errorf("reading the live object: %w", err)
		}
	case errors.Is(describeAPIError(err), ErrNotFound):
	default:
		return nil, fmt.Errorf("reading the live object: %w", c.requestError(ctx, err, m, t.namespace, t.name))
	}
	dry, err := c.apply(ctx, m, t, true)
	if err != nil {
		return nil, fmt.Errorf("the server-side dry run failed: %w", err)
	}
	lines := objectDiff(live, dry)
	what := objectLabel(groupResource(m.Group, m.Resource), t.namespace, t.name)
	// A diff cut short would show the approver a part as if it were the
	// whole (200 labels sort before the spec they hide): none is shown.
	if len(lines) > maxDiffLines {
		return nil, fmt.Errorf("%w: the dry run of %s changes %d fields, and an approval shows at most %d; split the change into smaller manifests so that all of it can be shown", tools.ErrNoPreview, what, len(lines), maxDiffLines)
	}
	head := "server-side apply dry run (field manager " + FieldManager + ") of " + what + ": "
	switch {
	case live == nil:
		head += "creates it"
	case len(lines) == 0:
		head += "no change"
	default:
		head += fmt.Sprintf("%d field(s) change", len(lines))
	}
	return &tools.Impact{
		Kind:          "dry-run",
		Role:          handle,
		Statement:     "apply",
		EstimatedRows: 1,
		Tables:        []string{what},
		Plan:          strings.Join(append([]string{head}, lines...), "\n"),
		Duration:      time.Since(start),
	}, nil
}

// objectDiff lists the fields that differ between live (nil: none) and
// next, one line each: "+ path: value", "- path: value", "~ path: old →
// new". Metadata the server moves on every write is left out. Whatever a
// read would mask (masking.Profile.MaskObject with the default profile:
// Secret data, last-applied annotations, secret-looking env values, the
// detectors' finds) shows only as [MASKED] / [MASKED, changed]. Paths and
// values show every character that is not printable ASCII escaped
// (\u202e), long runs of whitespace counted, and a long value its head,
// its tail and its length.
func objectDiff(live, next map[string]any) []string {
	before, after := map[string]string{}, map[string]string{}
	maskedBefore, maskedAfter := map[string]string{}, map[string]string{}
	if live != nil {
		flatten("", prepareForDiff(live), before)
		flatten("", maskForDiff(prepareForDiff(live)), maskedBefore)
	}
	flatten("", prepareForDiff(next), after)
	flatten("", maskForDiff(prepareForDiff(next)), maskedAfter)
	masked := map[string]bool{}
	for p, v := range before {
		if maskedBefore[p] != v {
			masked[p] = true
		}
	}
	for p, v := range after {
		if maskedAfter[p] != v {
			masked[p] = true
		}
	}
	maskSecretLeaves(before, after, masked)
	paths := map[string]bool{}
	for p := range before {
		paths[p] = true
	}
	for p := range after {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	var out []string
	for _, p := range sorted {
		b, inB := before[p]
		n, inN := after[p]
		shown := visible(p)
		switch {
		case inB && inN && b == n:
		case inB && inN:
			out = append(out, "~ "+shown+": "+short(b, maxDiffValue)+" → "+short(n, maxDiffValue))
		case inN:
			out = append(out, "+ "+shown+": "+short(n, maxDiffValue))
		default:
			out = append(out, "- "+shown+": "+short(b, maxDiffValue))
		}
	}
	return out
}

// diffProfile is the masking profile the diff masks with: the default
// profile of masking.DefaultConfig, the one reads are masked with at least.
var diffProfile = sync.OnceValue(func() *masking.Profile {
	eng, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		panic("kubernetes: the default masking config does not compile: " + err.Error())
	}
	p, ok := eng.Profile("default")
	if !ok {
		panic("kubernetes: the default masking config has no default profile")
	}
	return p
})

// maskForDiff is a masked deep copy of obj. If masking fails, every leaf
// is masked: the diff then says only which fields change.
func maskForDiff(obj map[string]any) any {
	cp := deepCopyJSON(obj)
	out, _, err := diffProfile().MaskObject(cp)
	if err != nil {
		return maskEveryLeaf(obj)
	}
	return out
}

func deepCopyJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopyJSON(e)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = deepCopyJSON(e)
		}
		return l
	}
	return v
}

func maskEveryLeaf(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = maskEveryLeaf(e)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = maskEveryLeaf(e)
		}
		return l
	}
	return "[MASKED]"
}

// volatileMeta are metadata fields a write moves by itself (or that say
// nothing of the change): never shown in the diff.
var volatileMeta = []string{"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"}

// prepareForDiff returns a copy of obj without managedFields and the
// volatile metadata.
func prepareForDiff(obj map[string]any) map[string]any {
	cp := make(map[string]any, len(obj))
	for k, v := range obj {
		cp[k] = v
	}
	if meta, ok := obj["metadata"].(map[string]any); ok {
		m := make(map[string]any, len(meta))
		for k, v := range meta {
			m[k] = v
		}
		for _, k := range volatileMeta {
			delete(m, k)
		}
		cp["metadata"] = m
	}
	return cp
}

// maskedPrefixes are fields whose values never appear in a diff, whatever
// the kind: Secret data (a Secret reached by any path) and the
// last-applied annotation, which copies a whole manifest.
var maskedPrefixes = []string{"data.", "stringData.", "metadata.annotations.kubectl.kubernetes.io/last-applied-configuration"}

// maskSecretLeaves replaces masked values (the paths in masked, and
// under maskedPrefixes) with a marker that still says whether the value
// changed. The prefixes apply to Secrets' data and to the last-applied
// annotation of every kind, whatever masking found.
func maskSecretLeaves(before, after map[string]string, masked map[string]bool) {
	secret := before["kind"] == `"Secret"` || after["kind"] == `"Secret"`
	for _, p := range mergedKeys(before, after) {
		hide := masked[p]
		for _, pre := range maskedPrefixes {
			if strings.HasPrefix(p, pre) && (secret || !strings.HasPrefix(pre, "data") && !strings.HasPrefix(pre, "stringData")) {
				hide = true
			}
		}
		if !hide {
			continue
		}
		b, inB := before[p]
		n, inN := after[p]
		if inB {
			before[p] = "[MASKED]"
		}
		if inN {
			after[p] = "[MASKED]"
			if inB && b != n {
				after[p] = "[MASKED, changed]"
			}
		}
	}
}

func mergedKeys(a, b map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// short is a value as the diff shows it: escaped (visible), runs of 16
// or more spaces counted (⟨200 spaces⟩, then the value's length), and when
// still longer than n bytes, its head and tail around a marker that says
// how many bytes are not shown and how long the value is.
func short(s string, n int) string {
	s = visible(s)
	total := len(s)
	s = collapseRuns(s)
	if len(s) <= n {
		if len(s) != total {
			return s + fmt.Sprintf(" (%d bytes)", total)
		}
		return s
	}
	head, tail := cutUTF8(s, n/2, true), cutUTF8(s, n/2, false)
	return fmt.Sprintf("%s…⟨%d bytes not shown⟩…%s (%d bytes)", head, len(s)-len(head)-len(tail), tail, total)
}

// cutUTF8 is the first (or last) at most n bytes of s, whole runes only.
func cutUTF8(s string, n int, first bool) string {
	if first {
		i := n
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		return s[:i]
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}

// collapseRuns writes runs of 16 or more spaces as a count,
// so padding cannot push what follows out of sight.
func collapseRuns(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] == s[i] {
			j++
		}
		if n := j - i; n >= 16 && s[i] == ' ' {
			fmt.Fprintf(&b, "⟨%d spaces⟩", n)
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

// visible escapes every rune of s that is not printable ASCII (controls,
// bidi overrides, zero-width characters, look-alike letters) as \uXXXX,
// so the approver reads the value's characters, not their rendering.
func visible(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 0x20 && r <= 0x7e:
			b.WriteRune(r)
		case r > 0xffff:
			fmt.Fprintf(&b, "\\U%08x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}
