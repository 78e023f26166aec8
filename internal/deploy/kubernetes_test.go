package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// kustomization is the part of deploy/kubernetes/kustomization.yaml the
// tests read.
type kustomization struct {
	Namespace string   `json:"namespace"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
	Replicas []struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	} `json:"replicas"`
}

// manifest is one object of a file under deploy/kubernetes.
type manifest struct {
	file string
	obj  *unstructured.Unstructured
}

func (m manifest) String() string {
	return fmt.Sprintf("%s: %s %s", m.file, m.obj.GetKind(), m.obj.GetName())
}

func kubeDir(t testing.TB) string { return filepath.Join(repoRoot(t), "deploy", "kubernetes") }

func readKustomization(t testing.TB) kustomization {
	t.Helper()
	var k kustomization
	if err := yaml.Unmarshal(readFile(t, filepath.Join(kubeDir(t), "kustomization.yaml")), &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// readManifests decodes every object of every file kustomization.yaml lists,
// in its order.
func readManifests(t testing.TB) []manifest {
	t.Helper()
	var out []manifest
	for _, file := range readKustomization(t).Resources {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(readFile(t, filepath.Join(kubeDir(t), file)))))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
				continue // a document of comments only
			}
			obj := &unstructured.Unstructured{}
			if err := obj.UnmarshalJSON(js); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			out = append(out, manifest{file: file, obj: obj})
		}
	}
	return out
}

// TestKustomizationListsEveryManifest: kubectl apply -k applies what the
// kustomization lists, so a manifest it forgets would never be installed.
func TestKustomizationListsEveryManifest(t *testing.T) {
	k := readKustomization(t)
	files, err := filepath.Glob(filepath.Join(kubeDir(t), "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			onDisk = append(onDisk, base)
		}
	}
	listed := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(onDisk, listed) {
		t.Errorf("deploy/kubernetes has %v; kustomization.yaml lists %v", onDisk, listed)
	}
	if k.Namespace != "airlock" {
		t.Errorf("kustomization.yaml namespace = %q, want airlock", k.Namespace)
	}
	for _, m := range readManifests(t) {
		if ns := m.obj.GetNamespace(); m.obj.GetKind() != "Namespace" && ns != k.Namespace {
			t.Errorf("%s: namespace %q, want %q (the kustomization's), so that the files also apply one by one", m, ns, k.Namespace)
		}
	}
}

// TestKubernetesManifestsDryRun applies every manifest, server-side with
// dryRun: All, to a real kube-apiserver, after creating the Namespace and a
// ServiceMonitor CRD for real, and fails on any error or warning. The API
// server's admission runs on each (Pod Security "restricted" warns about
// the Deployment's pod template in the namespace the manifests label).
func TestKubernetesManifestsDryRun(t *testing.T) {
	c := newApplier(t)
	manifests := readManifests(t)
	c.createForReal(t, manifests)
	for _, m := range manifests {
		t.Run(m.file+"/"+m.obj.GetKind(), func(t *testing.T) {
			warnings, err := c.dryRunApply(m.obj)
			if err != nil {
				t.Errorf("%s: %v", m, err)
			}
			for _, w := range warnings {
				t.Errorf("%s: warning: %s", m, w)
			}
		})
	}

	// The check is worth something only if it fails on broken manifests.
	deployment := find(t, manifests, "Deployment")
	t.Run("a misspelled field is refused", func(t *testing.T) {
		bad := deployment.obj.DeepCopy()
		if err := unstructured.SetNestedField(bad.Object, int64(2), "spec", "replica"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.dryRunApply(bad); err == nil || !strings.Contains(err.Error(), "replica") {
			t.Errorf("dry-run apply of a Deployment with spec.replica: err = %v, want an error naming the field", err)
		}
	})
	t.Run("a pod outside the restricted profile is a warning", func(t *testing.T) {
		bad := deployment.obj.DeepCopy()
		containers, _, _ := unstructured.NestedSlice(bad.Object, "spec", "template", "spec", "containers")
		sc := containers[0].(map[string]any)["securityContext"].(map[string]any)
		sc["allowPrivilegeEscalation"] = true
		if err := unstructured.SetNestedSlice(bad.Object, containers, "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		warnings, err := c.dryRunApply(bad)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "allowPrivilegeEscalation") }) {
			t.Errorf("dry-run apply with allowPrivilegeEscalation: true: warnings %q, want one from Pod Security", warnings)
		}
	})
	t.Run("a misspelled ServiceMonitor field is refused", func(t *testing.T) {
		bad := find(t, manifests, "ServiceMonitor").obj.DeepCopy()
		endpoints, _, _ := unstructured.NestedSlice(bad.Object, "spec", "endpoints")
		endpoints[0].(map[string]any)["intervall"] = "30s"
		if err := unstructured.SetNestedSlice(bad.Object, endpoints, "spec", "endpoints"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.dryRunApply(bad); err == nil || !strings.Contains(err.Error(), "intervall") {
			t.Errorf("dry-run apply of a ServiceMonitor with endpoints[].intervall: err = %v, want an error naming the field", err)
		}
	})
}

func find(t testing.TB, ms []manifest, kind string) manifest {
	t.Helper()
	for _, m := range ms {
		if m.obj.GetKind() == kind {
			return m
		}
	}
	t.Fatalf("no %s in deploy/kubernetes", kind)
	return manifest{}
}

// applier applies objects with the dynamic client, resolving kinds through
// discovery, and collects the API server's warnings.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	warn   *warnings
}

type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

func newApplier(t testing.TB) *applier {
	t.Helper()
	k := testenv.Kube(t)
	cfg := rest.CopyConfig(k.AdminConfig)
	w := &warnings{}
	cfg.WarningHandler = w
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)), warn: w}
}

func (c *applier) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("the API server does not serve %s: %w", gvk, err)
	}
	if m.Scope.Name() == "namespace" {
		return c.dyn.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return c.dyn.Resource(m.Resource), nil
}

// dryRunApply is `kubectl apply --server-side --dry-run=server
// --validate=strict`: the API server decodes, defaults, validates and admits
// the object, and stores nothing.
func (c *applier) dryRunApply(obj *unstructured.Unstructured) ([]string, error) {
	c.warn.take()
	ri, err := c.resource(obj)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	force := true
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager:    "airlock-deploy-test",
		Force:           &force,
		DryRun:          []string{metav1.DryRunAll},
		FieldValidation: "Strict",
	})
	return c.warn.take(), err
}

// createForReal creates what a dry-run cannot stand in for: the Namespace
// (dry-run objects in it need it to exist, and Pod Security reads its
// labels) and the ServiceMonitor CRD, which the Prometheus Operator
// installs in a real cluster.
func (c *applier) createForReal(t testing.TB, manifests []manifest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := find(t, manifests, "Namespace").obj
	ri, err := c.resource(ns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ri.Create(ctx, ns.DeepCopy(), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the Namespace: %v", err)
	}

	crd := &unstructured.Unstructured{}
	js, err := yaml.YAMLToJSON(readFile(t, filepath.Join("testdata", "servicemonitor-crd.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	if err := crd.UnmarshalJSON(js); err != nil {
		t.Fatal(err)
	}
	crds := c.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the ServiceMonitor CRD: %v", err)
	}
	for {
		got, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		if slices.ContainsFunc(conds, func(c any) bool {
			m, _ := c.(map[string]any)
			return m["type"] == "Established" && m["status"] == "True"
		}) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the ServiceMonitor CRD is not established: %v", got.Object["status"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Discovery serves the new kind a moment after it is established.
	for {
		c.mapper.Reset()
		if _, err := c.mapper.RESTMapping(schema.GroupKind{Group: "monitoring.coreos.com", Kind: "ServiceMonitor"}, "v1"); err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("discovery does not serve ServiceMonitor")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKubernetesConfigChecks: the ConfigMap's airlock.yaml and policy.yaml
// pass `airlock config check`, as they would in the pod at /etc/airlock.
func TestKubernetesConfigChecks(t *testing.T) {
	cm := find(t, readManifests(t), "ConfigMap").obj
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	dir := t.TempDir()
	for _, key := range []string{"airlock.yaml", "policy.yaml"} {
		if data[key] == "" {
			t.Fatalf("the ConfigMap has no %s", key)
		}
		writeFile(t, filepath.Join(dir, key), []byte(data[key]))
	}
	configCheck(t, filepath.Join(dir, "airlock.yaml"))
	// Two replicas share one store: it must be PostgreSQL, its password
	// by reference to the file the Deployment mounts from the Secret.
	var cfg struct {
		Store string `json:"store"`
	}
	if err := yaml.Unmarshal([]byte(data["airlock.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Store, "postgres://") || !strings.Contains(cfg.Store, "password_file=secrets/store-password") {
		t.Errorf("the ConfigMap's store is %q, want postgres://… with password_file=secrets/store-password (two replicas share it)", cfg.Store)
	}
}

// TestKubernetesDeploymentMatchesImageAndConfig: what the Deployment
// assumes about the image and the config is true of them.
func TestKubernetesDeploymentMatchesImageAndConfig(t *testing.T) {
	ms := readManifests(t)
	dep := find(t, ms, "Deployment").obj
	var d struct {
		Spec struct {
			Replicas int `json:"replicas"`
			Template struct {
				Spec struct {
					ServiceAccountName string `json:"serviceAccountName"`
					SecurityContext    struct {
						RunAsUser  int64 `json:"runAsUser"`
						RunAsGroup int64 `json:"runAsGroup"`
					} `json:"securityContext"`
					Containers []struct {
						Image string   `json:"image"`
						Args  []string `json:"args"`
						Ports []struct {
							Name          string `json:"name"`
							ContainerPort int    `json:"containerPort"`
						} `json:"ports"`
						ReadinessProbe struct {
							HTTPGet struct{ Path, Port string } `json:"httpGet"`
						} `json:"readinessProbe"`
						LivenessProbe struct {
							HTTPGet struct{ Path, Port string } `json:"httpGet"`
						} `json:"livenessProbe"`
						Env []struct {
							Name      string `json:"name"`
							ValueFrom struct {
								SecretKeyRef struct{ Name, Key string } `json:"secretKeyRef"`
							} `json:"valueFrom"`
						} `json:"env"`
						VolumeMounts []struct {
							Name      string `json:"name"`
							MountPath string `json:"mountPath"`
						} `json:"volumeMounts"`
					} `json:"containers"`
					Volumes []struct {
						Name      string `json:"name"`
						Projected *struct {
							Sources []struct {
								ConfigMap *struct {
									Name  string                       `json:"name"`
									Items []struct{ Key, Path string } `json:"items"`
								} `json:"configMap"`
								Secret *struct {
									Name  string                       `json:"name"`
									Items []struct{ Key, Path string } `json:"items"`
								} `json:"secret"`
							} `json:"sources"`
						} `json:"projected"`
					} `json:"volumes"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	js, _ := dep.MarshalJSON()
	if err := json.Unmarshal(js, &d); err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	if d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2 (the shape for the PostgreSQL store)", d.Spec.Replicas)
	}
	k := readKustomization(t)
	if len(k.Replicas) != 0 {
		t.Errorf("kustomization.yaml replicas = %+v, want none: the Deployment's two replicas share the PostgreSQL store", k.Replicas)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	ctr := spec.Containers[0]
	if len(k.Images) != 1 || k.Images[0].Name != ctr.Image {
		t.Errorf("kustomization.yaml images %+v do not rename the Deployment's image %q", k.Images, ctr.Image)
	}

	// The image runs as 65532 (deploy/Dockerfile's USER) and listens on
	// 8080; /healthz and /readyz are what airlock serve serves.
	img := parseDockerfile(t, filepath.Join(repoRoot(t), "deploy", "Dockerfile"))
	final := img.stages[len(img.stages)-1]
	if user := fmt.Sprintf("%d:%d", spec.SecurityContext.RunAsUser, spec.SecurityContext.RunAsGroup); user != final.last("USER") {
		t.Errorf("the pod runs as %s, the image's USER is %s", user, final.last("USER"))
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].ContainerPort != 8080 || final.last("EXPOSE") != "8080" {
		t.Errorf("container ports %+v, image EXPOSE %q: want 8080 both", ctr.Ports, final.last("EXPOSE"))
	}
	if ctr.ReadinessProbe.HTTPGet.Path != "/readyz" || ctr.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes %+v %+v: want readiness /readyz, liveness /healthz", ctr.ReadinessProbe, ctr.LivenessProbe)
	}
	serve := string(readFile(t, filepath.Join(repoRoot(t), "cmd", "airlock", "serve.go")))
	for _, path := range []string{"/readyz", "/healthz", "/metrics"} {
		if !strings.Contains(serve, `mux.HandleFunc("`+path+`"`) && !strings.Contains(serve, `mux.Handle("`+path+`"`) {
			t.Errorf("cmd/airlock/serve.go does not serve %s any more", path)
		}
	}

	// The config the args name is in the projected volume, and every secret
	// reference of that config is filled from the Secret.
	if !slices.Equal(ctr.Args, []string{"serve", "--config", "/etc/airlock/airlock.yaml"}) {
		t.Errorf("args %q", ctr.Args)
	}
	files := map[string]bool{}
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			switch {
			case s.ConfigMap != nil:
				for _, it := range s.ConfigMap.Items {
					files[filepath.Join(mounts[v.Name], it.Path)] = true
				}
			case s.Secret != nil:
				for _, it := range s.Secret.Items {
					files[filepath.Join(mounts[v.Name], it.Path)] = true
				}
			}
		}
	}
	cm := find(t, ms, "ConfigMap").obj
	cfgText, _, _ := unstructured.NestedString(cm.Object, "data", "airlock.yaml")
	for _, f := range []string{"/etc/airlock/airlock.yaml", "/etc/airlock/policy.yaml"} {
		if !files[f] {
			t.Errorf("%s is not mounted (mounted: %v)", f, files)
		}
	}
	env := map[string]bool{}
	for _, e := range ctr.Env {
		if e.ValueFrom.SecretKeyRef.Name != "airlock" {
			t.Errorf("env %s is not from the Secret airlock", e.Name)
		}
		env[e.Name] = true
	}
	for key, value := range secretReferences(t, []byte(cfgText)) {
		switch {
		case strings.HasSuffix(key, "_env") && !env[value]:
			t.Errorf("airlock.yaml's %s names %s, which the Deployment does not set", key, value)
		case strings.HasSuffix(key, "_file") && !files[value]:
			t.Errorf("airlock.yaml's %s names %s, which the Deployment does not mount", key, value)
		}
	}
	if _, err := os.Stat(filepath.Join(kubeDir(t), "..", "README.md")); err != nil {
		t.Error(err)
	}
}

// secretReferences returns every *_env and *_file setting of a config file,
// by its path (resources[1].ca_key_file), with the value it names.
func secretReferences(t testing.TB, config []byte) map[string]string {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal(config, &doc); err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				p := k
				if path != "" {
					p = path + "." + k
				}
				if s, ok := child.(string); ok && (strings.HasSuffix(k, "_env") || strings.HasSuffix(k, "_file")) {
					refs[p] = s
				}
				walk(p, child)
			}
		case []any:
			for i, child := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), child)
			}
		}
	}
	walk("", doc)
	return refs
}
