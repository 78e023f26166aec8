package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The test cluster has no kubelet, so nothing answers the API server when
// it proxies a pods/log request to a node. StartKubelet is the one stand-in:
// a small HTTPS server that answers the kubelet's GET
// /containerLogs/{namespace}/{pod}/{container} and nothing else, registered
// as a Node whose InternalIP is 127.0.0.1 and whose kubelet port is its
// port. Everything before it is real: the client's request reaches the
// API server, which authenticates and authorizes it (RBAC on pods/log),
// finds the pod and its node, and connects to the stand-in verifying its
// serving certificate (--kubelet-certificate-authority) and presenting its
// own client certificate (--kubelet-client-certificate), which the stand-in
// requires and verifies, as a kubelet does.

// Kubelet is a running kubelet stand-in and its Node.
type Kubelet struct {
	// NodeName is the Node registered for it; put Pods on it with
	// spec.nodeName.
	NodeName string

	srv  *httptest.Server
	mu   sync.Mutex
	logs map[string]string
	reqs []KubeletRequest
}

// KubeletRequest is one request the stand-in answered.
type KubeletRequest struct {
	Path  string
	Query url.Values
	// ClientCN is the common name of the client certificate the API server
	// presented.
	ClientCN string
}

// StartKubelet starts a kubelet stand-in for k and registers its Node; both
// go away when the test ends.
func (k *KubeCluster) StartKubelet(t testing.TB) *Kubelet {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	kl := &Kubelet{NodeName: "kubelet-" + hex.EncodeToString(b), logs: map[string]string{}}

	cert, err := k.kubeletServingCert()
	if err != nil {
		t.Fatalf("kubelet stand-in certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(k.ca)
	kl.srv = httptest.NewUnstartedServer(http.HandlerFunc(kl.serve))
	kl.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}
	kl.srv.StartTLS()
	t.Cleanup(kl.srv.Close)
	port := int32(kl.srv.Listener.Addr().(*net.TCPAddr).Port)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := k.Admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: kl.NodeName}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("registering node %s: %v", kl.NodeName, err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
	if _, err := k.Admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting node %s's kubelet address: %v", kl.NodeName, err)
	}
	t.Cleanup(func() {
		_ = k.Admin.CoreV1().Nodes().Delete(context.Background(), kl.NodeName, metav1.DeleteOptions{})
	})
	return kl
}

// SetLog sets what the stand-in answers for a container's log.
func (kl *Kubelet) SetLog(namespace, pod, container, text string) {
	kl.mu.Lock()
	defer kl.mu.Unlock()
	kl.logs[namespace+"/"+pod+"/"+container] = text
}

// Requests returns the requests the stand-in answered.
func (kl *Kubelet) Requests() []KubeletRequest {
	kl.mu.Lock()
	defer kl.mu.Unlock()
	return append([]KubeletRequest(nil), kl.reqs...)
}

// serve answers GET /containerLogs/NS/POD/CONTAINER as the kubelet does for
// the options the API server passes on: tailLines (the last N lines) and
// limitBytes (the first N bytes of that). A log it was not given is a 404.
func (kl *Kubelet) serve(w http.ResponseWriter, r *http.Request) {
	req := KubeletRequest{Path: r.URL.Path, Query: r.URL.Query()}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	kl.mu.Lock()
	kl.reqs = append(kl.reqs, req)
	text, ok := kl.logs[strings.TrimPrefix(r.URL.Path, "/containerLogs/")]
	kl.mu.Unlock()
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/containerLogs/") || !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	if n := atoi(q.Get("tailLines")); n > 0 {
		lines := strings.SplitAfter(text, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		text = strings.Join(lines, "")
	}
	if n := atoi(q.Get("limitBytes")); n > 0 && n < len(text) {
		text = text[:n]
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(text))
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

// kubeletServingCert is a serving certificate for 127.0.0.1 signed by the
// cluster's CA.
func (k *KubeCluster) kubeletServingCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "kubelet-stand-in"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.ca, &key.PublicKey, k.caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
