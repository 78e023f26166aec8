package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// kube-apiserver and etcd are built from the tools module internal/tools/kube
// (its own go.mod, so Kubernetes' server code never enters airlock's module
// graph) by internal/tools/kube/build.sh into
// TestBinDir()/<first 16 hex of sha256(internal/tools/kube/go.sum)>/ — a new go.sum
// means new binaries. The build takes minutes, so tests never start it: when
// the binaries are missing the test is Unavailable with the command to run.
//
// One control plane serves every test of a test binary (it takes about 3 s and
// 300 MB to start); each test gets its own namespace. Tests that stop the API
// server get a private one from KubePrivate. Either way the processes are
// killed when the test binary exits, even when it is killed: a small reaper
// shell waits for the test process to go away, then kills them and removes
// their directory.
const kubeBinDirEnv = "AIRLOCK_KUBE_BIN_DIR"

// KubeServiceAccountIssuer is the API server's --service-account-issuer and
// its only --api-audiences entry.
const KubeServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// KubeCluster is a running kube-apiserver with its etcd on loopback:
// authorization by RBAC, no controller-manager, no kubelet (Pods stay
// Pending), no ServiceAccount admission (Pods need no default
// ServiceAccount). The aggregated ClusterRoles (view, edit, admin) are
// filled once at start, as kube-controller-manager would.
type KubeCluster struct {
	// URL is the API server's https URL on 127.0.0.1.
	URL string
	// CAData is the PEM of the CA that signed the serving certificate and
	// the admin's client certificate.
	CAData []byte
	// AdminKubeconfig is the path of a kubeconfig for a cluster admin
	// (client certificate in system:masters).
	AdminKubeconfig string
	// Admin is a clientset authenticated as that admin.
	Admin kubernetes.Interface
	// AdminConfig is the admin's rest.Config; copy it before changing it.
	AdminConfig *rest.Config

	private bool
	dir     string
	// ca and caKey sign the kubelet stand-ins' serving certificates
	// (kubelet.go); the API server verifies them with
	// --kubelet-certificate-authority.
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	etcd    *child
	api     *child
	stopped sync.Once
}

// child is a started process; done is closed when it has exited.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

var kubeShared struct {
	once sync.Once
	k    *KubeCluster
	err  error
}

// Kube returns the control plane shared by the tests of this test binary,
// starting it on first use.
func Kube(t testing.TB) *KubeCluster {
	t.Helper()
	dir := kubeBinDir(t)
	kubeShared.once.Do(func() {
		start := time.Now()
		kubeShared.k, kubeShared.err = startKube(dir, false)
		t.Logf("kube-apiserver shared by this test binary: ready in %s", time.Since(start).Round(time.Millisecond))
	})
	if kubeShared.err != nil {
		t.Fatalf("starting kube-apiserver: %v", kubeShared.err)
	}
	return kubeShared.k
}

// KubePrivate starts a control plane for this test only, stopped when the
// test ends; use it to stop the API server (Stop) without disturbing others.
func KubePrivate(t testing.TB) *KubeCluster {
	t.Helper()
	dir := kubeBinDir(t)
	start := time.Now()
	k, err := startKube(dir, true)
	if err != nil {
		t.Fatalf("starting kube-apiserver: %v", err)
	}
	t.Logf("private kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(k.shutdown)
	return k
}

// Stop kills the API server (SIGKILL, as a crash would), leaving etcd up.
// Only a KubePrivate cluster may be stopped.
func (k *KubeCluster) Stop(t testing.TB) {
	t.Helper()
	if !k.private {
		t.Fatal("Stop on the shared kube-apiserver would break other tests; use testenv.KubePrivate")
	}
	k.stopped.Do(k.api.kill)
}

func (k *KubeCluster) shutdown() {
	k.stopped.Do(k.api.kill)
	k.etcd.kill()
	_ = os.RemoveAll(k.dir)
}

// Namespace creates a namespace with a unique name for the test, and in it
// the "default" ServiceAccount (no controller-manager makes it). Namespaces
// are not deleted: without a controller-manager they would stay Terminating.
func (k *KubeCluster) Namespace(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	base := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(base) > 40 {
		base = base[:40]
	}
	name := strings.Trim(base, "-") + "-" + hex.EncodeToString(b)
	_, err := k.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	_, err = k.Admin.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the default ServiceAccount in %s: %v", name, err)
	}
	return name
}

// WaitAllowed polls a SubjectAccessReview until the user (with groups) may
// do what attrs describe: a fresh RoleBinding takes a moment to apply.
func (k *KubeCluster) WaitAllowed(t testing.TB, user string, groups []string, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := k.Admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		cancel()
		if err == nil && r.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still not allowed %+v after 10s (err %v)", user, attrs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kubeBinDir finds the directory holding kube-apiserver and etcd, or stops
// the test as Unavailable.
func kubeBinDir(t testing.TB) string {
	t.Helper()
	hint := "run `make test-deps` (builds them with internal/tools/kube/build.sh into the test binary directory, about 4 minutes cold on two idle cores) or set " + kubeBinDirEnv
	dir := os.Getenv(kubeBinDirEnv)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			Unavailable(t, "kube-apiserver", hint, err)
		}
		sum, err := os.ReadFile(filepath.Join(root, "internal/tools/kube/go.sum"))
		if err != nil {
			Unavailable(t, "kube-apiserver", hint, err)
		}
		h := sha256.Sum256(sum)
		binDir, err := TestBinDir()
		if err != nil {
			Unavailable(t, "kube-apiserver", hint, err)
		}
		dir = filepath.Join(binDir, hex.EncodeToString(h[:])[:16])
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			Unavailable(t, "kube-apiserver", hint, err)
		}
	}
	return dir
}

// startKube writes the PKI, starts etcd and kube-apiserver and waits until
// the API server is ready.
func startKube(binDir string, private bool) (_ *KubeCluster, err error) {
	sweepKubeDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("airlock-kube-%d-", os.Getpid()))
	if err != nil {
		return nil, err
	}
	k := &KubeCluster{private: private, dir: dir}
	defer func() {
		if err != nil {
			if k.api != nil {
				k.api.kill()
			}
			if k.etcd != nil {
				k.etcd.kill()
			}
			_ = os.RemoveAll(dir)
		}
	}()
	pki, err := writeKubePKI(dir)
	if err != nil {
		return nil, err
	}

	etcdPort, peerPort, apiPort := freePort(), freePort(), freePort()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	k.etcd, err = startChild(dir, "etcd", filepath.Join(binDir, "etcd"),
		"--name=airlock-test",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=airlock-test="+peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	k.api, err = startChild(dir, "kube-apiserver", filepath.Join(binDir, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--tls-cert-file="+pki.servingCert,
		"--tls-private-key-file="+pki.servingKey,
		"--client-ca-file="+pki.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer="+KubeServiceAccountIssuer,
		"--api-audiences="+KubeServiceAccountIssuer,
		"--service-account-key-file="+pki.saPub,
		"--service-account-signing-key-file="+pki.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--kubelet-certificate-authority="+pki.caCert,
		"--kubelet-client-certificate="+pki.kubeletClientCert,
		"--kubelet-client-key="+pki.kubeletClientKey,
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
		"--v=0",
	)
	if err != nil {
		return nil, err
	}
	startReaper(dir, k.etcd.cmd.Process.Pid, k.api.cmd.Process.Pid)

	k.URL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	k.CAData = pki.caPEM
	k.ca, k.caKey = pki.ca, pki.caKey
	k.AdminConfig = &rest.Config{
		Host: k.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   pki.caPEM,
			CertData: pki.adminCertPEM,
			KeyData:  pki.adminKeyPEM,
		},
		QPS:   -1, // no client-side rate limit in tests
		Burst: -1,
	}
	k.AdminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(k.AdminKubeconfig, kubeconfigYAML(k.URL, pki.caPEM, pki.adminCertPEM, pki.adminKeyPEM), 0o600); err != nil {
		return nil, err
	}
	k.Admin, err = kubernetes.NewForConfig(k.AdminConfig)
	if err != nil {
		return nil, err
	}
	if err := k.waitReady(60 * time.Second); err != nil {
		return nil, err
	}
	if err := k.aggregateClusterRoles(); err != nil {
		return nil, fmt.Errorf("aggregating ClusterRoles: %w", err)
	}
	return k, nil
}

// aggregateClusterRoles does once what kube-controller-manager's
// clusterrole-aggregation controller keeps doing: fill the rules of
// aggregated ClusterRoles (admin, edit, view) from the ClusterRoles their
// selectors match. Without it the built-in "view" grants nothing.
func (k *KubeCluster) aggregateClusterRoles() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	roles, err := k.Admin.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, cr := range roles.Items {
		if cr.AggregationRule == nil {
			continue
		}
		var rules []rbacv1.PolicyRule
		for _, sel := range cr.AggregationRule.ClusterRoleSelectors {
			s, err := metav1.LabelSelectorAsSelector(&sel)
			if err != nil {
				return err
			}
			for _, src := range roles.Items {
				if src.Name != cr.Name && s.Matches(labels.Set(src.Labels)) {
					rules = append(rules, src.Rules...)
				}
			}
		}
		cr.Rules = rules
		if _, err := k.Admin.RbacV1().ClusterRoles().Update(ctx, &cr, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// waitReady polls /readyz as the admin.
func (k *KubeCluster) waitReady(timeout time.Duration) error {
	cert, err := tls.X509KeyPair(k.AdminConfig.CertData, k.AdminConfig.KeyData)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CAData)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-k.api.done:
			return fmt.Errorf("kube-apiserver exited during start-up; log:\n%s", logTail(filepath.Join(k.dir, "kube-apiserver.log")))
		default:
		}
		resp, err := client.Get(k.URL + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %s (last: %s); log:\n%s", timeout, last, logTail(filepath.Join(k.dir, "kube-apiserver.log")))
}

// startChild starts a control-plane process logging to DIR/NAME.log. It gets
// SIGKILL when the test process dies (Pdeathsig); the reaper covers the rest.
func startChild(dir, name, bin string, args ...string) (*child, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, nil
}

// startReaper starts a detached shell that waits for this test process to
// exit, then kills the control plane and removes its directory.
func startReaper(dir string, pids ...int) {
	var ps []string
	for _, p := range pids {
		ps = append(ps, strconv.Itoa(p))
	}
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done; kill -9 %s 2>/dev/null; sleep 1; rm -rf '%s'`,
		os.Getpid(), strings.Join(ps, " "), dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		go func() { _ = cmd.Wait() }()
	}
}

// sweepKubeDirs removes directories left by test processes that no longer
// run (a reaper that was killed too).
func sweepKubeDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "airlock-kube-*"))
	for _, m := range matches {
		parts := strings.SplitN(filepath.Base(m), "-", 4)
		if len(parts) < 4 {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(m)
		}
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

type kubePKI struct {
	caCert, servingCert, servingKey, saKey, saPub string
	kubeletClientCert, kubeletClientKey           string
	caPEM, adminCertPEM, adminKeyPEM              []byte
	ca                                            *x509.Certificate
	caKey                                         *ecdsa.PrivateKey
}

// writeKubePKI generates a CA, a serving certificate for 127.0.0.1, an admin
// client certificate (O=system:masters) and the ServiceAccount signing key.
func writeKubePKI(dir string) (*kubePKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "airlock-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      subject,
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(48 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
	}
	servingCert, servingKey, err := issue(2, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}, []string{"localhost", "kubernetes.default.svc"})
	if err != nil {
		return nil, err
	}
	adminCert, adminKey, err := issue(3, pkix.Name{CommonName: "airlock-test-admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, err
	}
	// The API server's client certificate towards kubelets.
	kubeletCert, kubeletKey, err := issue(4, pkix.Name{CommonName: "kube-apiserver-kubelet-client"}, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	p := &kubePKI{
		caCert:       filepath.Join(dir, "ca.crt"),
		servingCert:  filepath.Join(dir, "serving.crt"),
		servingKey:   filepath.Join(dir, "serving.key"),
		saKey:        filepath.Join(dir, "sa.key"),
		saPub:        filepath.Join(dir, "sa.pub"),
		caPEM:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		adminCertPEM: adminCert,
		adminKeyPEM:  adminKey,
		ca:           caCert,
		caKey:        caKey,

		kubeletClientCert: filepath.Join(dir, "kubelet-client.crt"),
		kubeletClientKey:  filepath.Join(dir, "kubelet-client.key"),
	}
	for path, data := range map[string][]byte{
		p.caCert:      p.caPEM,
		p.servingCert: servingCert,
		p.servingKey:  servingKey,
		p.saKey:       pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
		p.saPub:       pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),

		p.kubeletClientCert: kubeletCert,
		p.kubeletClientKey:  kubeletKey,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// kubeconfigYAML is a kubeconfig with one cluster, user and context, the
// credentials inline (base64), as kubectl config view --raw --flatten writes.
func kubeconfigYAML(server string, ca, cert, key []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, server, b64(ca), b64(cert), b64(key)))
}
